"""The receiver: a pynetdicom AE serving Verification and MR storage."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association as PeerAssociation
from pynetdicom.transport import ThreadedAssociationServer

from node.receiver.associations import AssociationTracker
from node.receiver.handoff import (
    DispatchingAE,
    HandedAE,
    HandedSource,
    Handoff,
    PlainAcceptServer,
    receive_handoffs,
    releasing,
)
from node.receiver.negotiation import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, VERIFICATION
from node.receiver.store import SUCCESS, StoreHandler
from node.settings import DicomSettings, TlsSettings
from node.tls import server_context

log = logging.getLogger(__name__)


class Receiver:
    """Listens for associations; ``start`` returns at once, ``stop`` drains and aborts.

    With ``handoff`` it listens for the node's receiver processes and hands
    each connection to the least busy of them (itself included); with
    ``handed`` it is one of those others, serving what it is handed (see
    :mod:`node.receiver.handoff`).
    """

    def __init__(self, dicom: DicomSettings, tls: TlsSettings, store_handler: StoreHandler,
                 tracker: AssociationTracker, incoming: Path, *, handoff: Handoff | None = None,
                 handed: HandedSource | None = None) -> None:
        if handoff is not None and handed is not None:
            raise ValueError("a receiver either hands connections over (handoff) or is handed them (handed)")
        self._incoming = incoming
        self._dicom = dicom
        self._tls = tls
        self._store_handler = store_handler
        self._tracker = tracker
        self._handoff = handoff
        self._handed = handed
        self._server: ThreadedAssociationServer | None = None
        self._accepting = False

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the receiver is already started")
        # pynetdicom only offers chunked receive as a module switch; this process
        # has one receiver, so it is set once here. Each data set then streams to a
        # temporary file instead of memory and reaches the handler as dataset_path.
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pynetdicom streams into a NamedTemporaryFile with no folder of its own: in a shared /tmp
        # an aborted receive left a patient's images that nothing deleted. This process's temporary
        # folder is therefore the store's incoming folder, swept with the store's staged files.
        self._incoming.mkdir(exist_ok=True)
        tempfile.tempdir = str(self._incoming)
        ae = self._build_ae()
        handlers: list[Any] = [
            *self._tracker.handlers(),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, self._tracker.counting(self._store_handler)),
        ]
        if self._handoff is not None:
            handlers.append(releasing(self._handoff.board, 0))
        if self._handed is not None:
            handlers.append(releasing(self._handed.board, self._handed.slot))
        ssl_context = server_context(self._tls) if self._tls.enabled else None
        address = (self._dicom.host, self._dicom.port)
        self._accepting = True
        if self._handed is None:
            self._server = ae.start_server(address, block=False, evt_handlers=handlers,
                                           ssl_context=ssl_context)
            return
        self._server = ae.make_server(address, evt_handlers=handlers, ssl_context=ssl_context)
        threading.Thread(target=receive_handoffs, args=(self._server, self._handed), name="handoff",
                         daemon=True).start()

    def stop_accepting(self) -> None:
        """Close the listening socket (or stop serving handed connections); open associations go on."""
        if self._server is not None and self._accepting:
            self._accepting = False
            self._server.shutdown()

    def stop(self, grace: float) -> None:
        """Stop accepting, give open associations ``grace`` seconds, then abort the rest."""
        self.stop_accepting()
        server = self._server
        if server is None:
            return
        self._server = None
        remaining = _wait_for(server, grace)
        if remaining:
            self._tracker.stopping()
        for assoc in remaining:
            log.warning("aborting association with %s:%s at shutdown",
                        assoc.requestor.address, assoc.requestor.port)
            assoc.abort()
        # An aborted association may still be inside a handler finishing its commit.
        for assoc in remaining:
            assoc.join(timeout=max(grace, 5.0))

    def _build_ae(self) -> AE:
        ae: AE
        if self._handoff is not None:
            ae = DispatchingAE(ae_title=self._dicom.ae_title, handoff=self._handoff)
        elif self._handed is not None:
            ae = HandedAE(ae_title=self._dicom.ae_title, handed=self._handed)
        else:
            ae = _ListeningAE(ae_title=self._dicom.ae_title)
        # pynetdicom rejects a wrong called AE title itself (0x01, 0x01, 0x07); EVT_REJECTED records it
        ae.require_called_aet = self._dicom.require_called_ae_title
        ae.maximum_associations = self._dicom.max_associations
        ae.acse_timeout = self._dicom.acse_timeout.total_seconds()
        ae.dimse_timeout = self._dicom.dimse_timeout.total_seconds()
        ae.network_timeout = self._dicom.network_timeout.total_seconds()
        ae.add_supported_context(VERIFICATION, TRANSFER_SYNTAXES[:2])
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        return ae


class _ListeningAE(AE):
    """The AE of a node with one receiver process: its server is a :class:`PlainAcceptServer`."""

    def make_server(self, *args: Any, **kwargs: Any) -> ThreadedAssociationServer:
        # start_server always asks for its own server class; this one replaces it
        return super().make_server(*args, **{**kwargs, "server_class": PlainAcceptServer})


def _on_echo(event: evt.Event) -> int:
    return SUCCESS


def _wait_for(server: ThreadedAssociationServer, grace: float) -> list[PeerAssociation]:
    deadline = time.monotonic() + grace
    while (remaining := server.active_associations) and time.monotonic() < deadline:
        time.sleep(0.1)
    return remaining
