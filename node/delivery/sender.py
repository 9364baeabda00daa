"""C-STORE SCU: send result files to a destination and report each object's remote status.

One association per attempt; each file is sent as stored (its own transfer
syntax, proposed beside the uncompressed ones). The sender only reports;
the outbox decides what a status means for the delivery. It does tell an
answer from silence: a destination that rejects the association (PS3.8
A-ASSOCIATE-RJ, decoded into words) or accepts none of an object's
presentation contexts has answered, so it is up; only no answer at all is a
connection failure.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    Comprehensive3DSRStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from pynetdicom.status import code_to_category

from node.delivery.routes import Route
from node.receiver.negotiation import VERIFICATION
from node.rejections import rejection_reason
from node.tls import client_context

log = logging.getLogger(__name__)

# pynetdicom's limit: 128 presentation contexts per association.
_MAX_CONTEXTS = 128
# What the node sends (TID 1500 SR, Segmentation, the key image as Secondary Capture).
_RESULT_CLASSES = (Comprehensive3DSRStorage, SegmentationStorage, SecondaryCaptureImageStorage)

def not_accepted(sop_class_uid: str) -> str:
    """Why an object of ``sop_class_uid`` was not sent: the destination accepted no context for it."""
    return f"{UID(sop_class_uid).name} not accepted by the destination"


@dataclass(frozen=True)
class ObjectToSend:
    key: int  # the caller's id for it (delivery item)
    path: Path
    sha256: str | None = None  # when given, a file with other content is not sent


@dataclass(frozen=True)
class ObjectOutcome:
    key: int
    sop_instance_uid: str | None
    status: int | None  # the remote DIMSE status; None when there was no answer
    error: str | None  # why it was not sent or not answered
    # The destination accepted no presentation context for its SOP class: sending it again
    # is refused the same way until the destination's configuration changes.
    refused: bool = False

    @property
    def acknowledged(self) -> bool:
        """The destination took it: success or a warning (it stored it, perhaps coerced)."""
        return self.status is not None and code_to_category(self.status) in ("Success", "Warning")


@dataclass(frozen=True)
class StoreOutcome:
    """``association_error`` is set when no association could be used at all.

    ``contacted`` is False when nothing could be read to send, so the
    destination was not asked: such an attempt says nothing about it.
    ``answered`` is True when the destination answered the association
    request (accepted or rejected it): it is up, whatever came of it.
    ``final`` is True when it rejected the association for a reason that
    retrying cannot change (an AE title it does not know).
    """

    association_error: str | None
    objects: tuple[ObjectOutcome, ...]
    contacted: bool = True
    answered: bool = False
    final: bool = False

    @property
    def connection_error(self) -> str | None:
        """Why the destination did not answer at all (what the circuit breaker counts), or None."""
        return None if self.answered else self.association_error


@dataclass(frozen=True)
class _NoAssociation:
    """Why an association cannot be used; ``answered``/``final`` as in :class:`StoreOutcome`."""

    reason: str
    answered: bool = False
    final: bool = False
    # The destination accepted the association but none of the proposed contexts.
    no_context: bool = False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DeliveryError(Exception):
    """Root of the sender's own errors (a route it cannot use)."""


class Sender:
    """Sends as ``calling_ae``; the timeouts bound every network wait."""

    def __init__(self, calling_ae: str, connect_timeout: timedelta, dimse_timeout: timedelta) -> None:
        if not calling_ae.strip():
            raise ValueError("calling_ae must not be empty")
        self._calling = calling_ae
        self._connect = connect_timeout.total_seconds()
        self._dimse = dimse_timeout.total_seconds()

    def _ae(self) -> AE:
        ae = AE(ae_title=self._calling)
        ae.acse_timeout = ae.connection_timeout = self._connect
        ae.dimse_timeout = ae.network_timeout = self._dimse
        return ae

    @staticmethod
    def _tls(route: Route) -> tuple[ssl.SSLContext, str] | None:
        if not route.tls.enabled:
            return None
        try:
            context = client_context(route.tls.ca_file, route.tls.cert_file, route.tls.key_file,
                                     check_hostname=route.tls.check_hostname)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise DeliveryError(f"{route.name}: cannot set up TLS: {exc}") from exc
        return context, route.host

    def _associate(self, ae: AE, route: Route) -> Association | _NoAssociation:
        try:
            tls_args = self._tls(route)
        except DeliveryError as exc:
            return _NoAssociation(str(exc))
        # The answer is taken from the PDU itself: pynetdicom 3.0 may report an association whose
        # A-ASSOCIATE-RJ its reactor handled (and then closed the connection) before the requesting
        # thread looked as neither rejected nor established, as if the connection had failed.
        answers: list[A_ASSOCIATE_AC | A_ASSOCIATE_RJ] = []

        def answered(event: evt.Event) -> None:
            if isinstance(event.pdu, (A_ASSOCIATE_AC, A_ASSOCIATE_RJ)):
                answers.append(event.pdu)

        try:
            assoc = ae.associate(route.host, route.port, ae_title=route.called_ae, tls_args=tls_args,
                                 evt_handlers=[(evt.EVT_PDU_RECV, answered)])
        except OSError as exc:  # pynetdicom resolves the host before it connects, and lets this through
            return _NoAssociation(f"could not associate with {route.describe()}: cannot resolve host "
                                  f"{route.host!r} ({exc})")
        if assoc.is_established:
            return assoc
        answer = answers[0] if answers else None
        if isinstance(answer, A_ASSOCIATE_RJ):
            words, final = rejection_reason(answer.result, answer.source, answer.reason_diagnostic)
            return _NoAssociation(f"association with {route.describe()} {words}", answered=True, final=final)
        if isinstance(answer, A_ASSOCIATE_AC):
            # pynetdicom aborts an association in which no proposed context was accepted
            return _NoAssociation(f"{route.describe()} accepted none of the proposed presentation contexts",
                                  answered=True, no_context=True)
        return _NoAssociation(f"could not associate with {route.describe()}: no connection, TLS failure "
                              "or abort")

    def echo(self, route: Route) -> str | None:
        """C-ECHO the destination; None when it answered (success, or a refusal: it is up), else why not."""
        ae = self._ae()
        ae.add_requested_context(VERIFICATION)
        # Proposed too, so a destination that does not offer Verification can still show it is up.
        for sop_class in _RESULT_CLASSES:
            ae.add_requested_context(sop_class)
        assoc = self._associate(ae, route)
        if isinstance(assoc, _NoAssociation):
            if assoc.answered:
                # An answer, if not the one wanted: the destination is up. A send attempt
                # meets the same answer and records it for its delivery.
                log.info("%s is up but did not take the association: %s", route.describe(), assoc.reason)
                return None
            return assoc.reason
        try:
            if not any(context.abstract_syntax == VERIFICATION for context in assoc.accepted_contexts):
                # It accepted an association, so it is up; it just does not offer Verification.
                log.info("%s refused Verification but accepted the association: taken as up",
                         route.describe())
                return None
            status = assoc.send_c_echo()
        finally:
            if assoc.is_established:
                assoc.release()
        if "Status" not in status:
            return f"no C-ECHO response from {route.describe()}"
        if status.Status != 0x0000:
            return f"{route.describe()} answered C-ECHO with 0x{status.Status:04X}"
        return None

    def store(self, route: Route, objects: Sequence[ObjectToSend]) -> StoreOutcome:
        """C-STORE every object in one association; each object's outcome in order."""
        readable: list[tuple[ObjectToSend, str, str, str]] = []
        unreadable: list[ObjectOutcome] = []
        for item in objects:
            try:
                if item.sha256 is not None and _sha256(item.path) != item.sha256:
                    unreadable.append(ObjectOutcome(item.key, None, None,
                                                    f"{item.path} changed since it was written (SHA-256)"))
                    continue
                meta = dcmread(item.path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).file_meta
                readable.append((item, str(meta.MediaStorageSOPClassUID),
                                 str(meta.MediaStorageSOPInstanceUID), str(meta.TransferSyntaxUID)))
            except (OSError, InvalidDicomError, AttributeError) as exc:
                unreadable.append(ObjectOutcome(item.key, None, None, f"cannot read {item.path}: {exc}"))
        if not readable:
            return StoreOutcome(None, tuple(unreadable), contacted=False)
        ae = self._ae()
        contexts: dict[str, list[str]] = {}
        for _, sop_class, _, syntax in readable:
            syntaxes = contexts.setdefault(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            if syntax not in syntaxes:
                syntaxes.insert(0, syntax)
        if sum(len(s) for s in contexts.values()) > _MAX_CONTEXTS:
            raise DeliveryError(f"{len(contexts)} SOP classes need more than {_MAX_CONTEXTS} contexts")
        for sop_class, syntaxes in contexts.items():
            for syntax in syntaxes:
                # one context per syntax: the acceptor answers each separately
                ae.add_requested_context(sop_class, syntax)
        assoc = self._associate(ae, route)
        if isinstance(assoc, _NoAssociation):
            if assoc.no_context:
                # Each object is refused for its SOP class: that is an answer about the
                # objects, not a failure of the association.
                return StoreOutcome(None, tuple(
                    [ObjectOutcome(item.key, uid, None, not_accepted(sop_class), refused=True)
                     for item, sop_class, uid, _ in readable] + unreadable), answered=True)
            return StoreOutcome(assoc.reason, tuple(
                [ObjectOutcome(item.key, uid, None, assoc.reason) for item, _, uid, _ in readable]
                + unreadable), answered=assoc.answered, final=assoc.final)
        accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
        outcomes: list[ObjectOutcome] = []
        try:
            for item, sop_class, uid, _ in readable:
                if sop_class not in accepted:
                    outcomes.append(ObjectOutcome(item.key, uid, None, not_accepted(sop_class), refused=True))
                    continue
                if not assoc.is_established:
                    outcomes.append(ObjectOutcome(item.key, uid, None, "association ended before sending"))
                    continue
                try:
                    status = assoc.send_c_store(item.path)
                except (ValueError, RuntimeError, OSError) as exc:
                    # pynetdicom raises when no accepted context fits the object
                    outcomes.append(ObjectOutcome(item.key, uid, None, str(exc)))
                    continue
                if "Status" not in status:
                    outcomes.append(ObjectOutcome(item.key, uid, None, "no C-STORE response (timeout)"))
                else:
                    code = int(status.Status)
                    comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
                    error = None if code_to_category(code) in ("Success", "Warning") else (
                        f"status 0x{code:04X}{comment}")
                    outcomes.append(ObjectOutcome(item.key, uid, code, error))
        finally:
            if assoc.is_established:
                assoc.release()
        log.info("sent %d object(s) to %s: %d acknowledged, %d of a SOP class it does not accept",
                 len(outcomes), route.describe(), sum(o.acknowledged for o in outcomes),
                 sum(o.refused for o in outcomes))
        return StoreOutcome(None, tuple(outcomes + unreadable), answered=True)
