"""DICOM senders for tests: pynetdicom associations and the DCMTK tools."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association

from node.receiver.negotiation import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, VERIFICATION
from tests.helpers.node import NodeProcess


def associate(node: NodeProcess, *, calling: str = "PYNETDICOM", ssl_context: ssl.SSLContext | None = None,
              abstract_syntaxes: Sequence[str] = (VERIFICATION, *STORAGE_SOP_CLASSES),
              transfer_syntaxes: Sequence[str] = TRANSFER_SYNTAXES[:2],
              called: str | None = None) -> Association:
    """An association with the node, calling it ``called`` (default: its AE title).

    Check ``is_established`` / ``is_rejected``.
    """
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for syntax in abstract_syntaxes:
        ae.add_requested_context(syntax, list(transfer_syntaxes))
    tls_args = (ssl_context, "localhost") if ssl_context is not None else None
    return ae.associate("127.0.0.1", node.port, ae_title=called or node.ae_title, tls_args=tls_args)


@contextmanager
def association(node: NodeProcess, **kwargs: object) -> Iterator[Association]:
    assoc = associate(node, **kwargs)  # type: ignore[arg-type]
    assert assoc.is_established, "association with the node was not established"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def store(node: NodeProcess, items: Sequence[Dataset | Path], **kwargs: object) -> list[Dataset]:
    """C-STORE each item in one association; the response status data sets."""
    with association(node, **kwargs) as assoc:
        return [assoc.send_c_store(item) for item in items]


@contextmanager
def raw_file_sending() -> Iterator[None]:
    """Send files as their raw encoded data set, so malformed ones reach the node unaltered."""
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def storescu(node: NodeProcess, paths: Sequence[Path], *args: str,
             calling: str = "STORESCU") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aet", calling, "-aec", node.ae_title, *args, "127.0.0.1", str(node.port),
         *map(str, paths)],
        capture_output=True, text=True, check=False, timeout=120,
    )


def echoscu(node: NodeProcess, *args: str, calling: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-aet", calling, "-aec", node.ae_title, *args, "127.0.0.1", str(node.port)],
        capture_output=True, text=True, check=False, timeout=60,
    )
