"""The C-STORE handler: validate, write durably, record, then answer.

Success (0x0000) is only answered once the file is under its final name, the
folder fsynced, and the instance row committed. Anything else is a failure
status with a comment; nothing is left on disk or in the database.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from sqlalchemy.exc import SQLAlchemyError

from node.metrics.receiving import ReceptionEvents
from node.receiver.associations import AssociationTracker
from node.receiver.validation import (
    DATABASE_UNAVAILABLE,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SERIES_CONFLICT,
    SOP_CLASS_NOT_SUPPORTED,
    UID_INVALID,
    Header,
    Rejection,
    read_header,
)
from node.storage import (
    CatalogConflict,
    InstanceCatalog,
    InstanceRecord,
    InstanceStore,
    InstanceTooLarge,
    InsufficientSpace,
    InvalidUID,
    RecordOutcome,
)

log = logging.getLogger(__name__)

SUCCESS = 0x0000
_COMMENT_LENGTH = 64  # ErrorComment is LO


class StoreHandler:
    """Bound to ``evt.EVT_C_STORE`` with its storage, catalog and association tracker."""

    def __init__(self, store: InstanceStore, catalog: InstanceCatalog, tracker: AssociationTracker,
                 metrics: ReceptionEvents | None = None) -> None:
        self._store = store
        self._catalog = catalog
        self._tracker = tracker
        self._metrics = metrics

    def __call__(self, event: Event) -> int | Dataset:
        answer = self._answer(event)
        if self._metrics is not None:
            if isinstance(answer, Dataset):
                self._metrics.instance_rejected(int(answer.Status))
            else:
                self._metrics.instance_received(answer)
        return answer if isinstance(answer, Dataset) else SUCCESS

    def _answer(self, event: Event) -> RecordOutcome | Dataset:
        request = cast(C_STORE, event.request)
        sop_uid = str(request.AffectedSOPInstanceUID or "")
        try:
            header, outcome = self._store_instance(event, str(request.AffectedSOPClassUID or ""), sop_uid)
        except Rejection as rejection:
            log.warning("C-STORE of SOP Instance %r refused with 0x%04X: %s",
                        sop_uid[:64], rejection.status, rejection.detail)
            return _status(rejection.status, rejection.comment)
        except SQLAlchemyError:
            log.exception("C-STORE of SOP Instance %r failed: database error", sop_uid[:64])
            return _status(DATABASE_UNAVAILABLE, "database unavailable, retry later")
        except Exception:  # the DIMSE boundary: answer the peer, keep the association
            log.exception("C-STORE of SOP Instance %r failed unexpectedly", sop_uid[:64])
            return _status(PROCESSING_FAILURE, "internal error")
        if outcome is RecordOutcome.STORED:
            log.debug("stored SOP Instance %s (study %s, series %s)",
                     sop_uid, header.key.study_uid, header.key.series_uid)
        return outcome

    def _store_instance(self, event: Event, sop_class: str, sop_uid: str) -> tuple[Header, RecordOutcome]:
        # PS3.7 requires the Affected SOP Class to be the presentation context's abstract syntax;
        # pynetdicom does not check it, and an Enhanced MR object sent on the MR Image context was stored.
        if sop_class != event.context.abstract_syntax:
            raise Rejection(SOP_CLASS_NOT_SUPPORTED, "Affected SOP Class UID is not the context's",
                            f"Affected SOP Class UID {sop_class} is not the context's "
                            f"{event.context.abstract_syntax}")
        received = Path(event.dataset_path)
        size = received.stat().st_size
        try:
            self._store.check_capacity(size)
            header = read_header(received, sop_class, sop_uid,
                                 max_inflated_bytes=self._store.max_instance_bytes)
            return self._write(event, received, header)
        except InstanceTooLarge as exc:
            raise Rejection(OUT_OF_RESOURCES, f"instance exceeds the maximum of "
                                              f"{self._store.max_instance_bytes} bytes", str(exc)) from exc
        except InsufficientSpace as exc:
            raise Rejection(OUT_OF_RESOURCES, "disk under the free-space watermark", str(exc)) from exc
        except InvalidUID as exc:
            raise Rejection(UID_INVALID, "a UID is not valid", str(exc)) from exc
        except CatalogConflict as exc:
            raise Rejection(SERIES_CONFLICT, "series already stored under another study", str(exc)) from exc

    def _write(self, event: Event, received: Path, header: Header) -> tuple[Header, RecordOutcome]:
        # A re-sent SOP Instance UID: see node.storage.catalog for the policy (a
        # byte-identical copy is a duplicate; other content becomes a new current version).
        record = InstanceRecord(
            key=header.key,
            sop_class_uid=header.sop_class_uid,
            transfer_syntax_uid=header.transfer_syntax_uid,
            modality=header.modality,
            series_number=header.series_number,
            series_description=header.series_description,
            association_id=self._tracker.row_id(event.assoc),
        )
        # pynetdicom's chunked-receive file is ours to take: it only deletes it, if still there, afterwards
        with self._store.adopt(received, header.key) as staged:
            outcome = self._catalog.record(record, staged)
        if outcome is RecordOutcome.DUPLICATE:
            log.info("SOP Instance %s already stored; answered success", header.key.sop_uid)
        elif outcome is RecordOutcome.NEW_VERSION:
            log.warning("SOP Instance %s re-sent with different content: stored as %s, now its current "
                        "version; study %s will be analysed again",
                        header.key.sop_uid, staged.relative_path, header.key.study_uid)
        elif outcome is RecordOutcome.RESTORED:
            log.info("SOP Instance %s sent again after its stored file was deleted: stored as %s; study %s "
                     "will be analysed again", header.key.sop_uid, staged.relative_path, header.key.study_uid)
        return header, outcome


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    # LO in the default repertoire: ASCII without backslash.
    safe = comment.encode("ascii", "replace").decode("ascii").replace("\\", "/")
    status.ErrorComment = safe[:_COMMENT_LENGTH]
    return status
