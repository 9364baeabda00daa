"""DICOM TLS contexts (PS3.15 BCP 195, TLS 1.2 or later), for the receiver and for callers.

Outside ``node.receiver`` so that `echo` builds its client context without
importing the receiver, the database and Alembic.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from node.settings import TlsSettings


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The receiver's context: its certificate, and client certificates checked against ``ca_file``.

    Raises :class:`ValueError` naming the setting when a file is missing or holds no PEM data.
    """
    if not tls.enabled or tls.cert_file is None or tls.key_file is None:
        raise ValueError("tls: server_context needs tls.enabled with cert_file and key_file")
    _readable({"tls.cert_file": tls.cert_file, "tls.key_file": tls.key_file, "tls.ca_file": tls.ca_file})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=tls.cert_file, keyfile=tls.key_file)
    except ssl.SSLError as exc:
        raise ValueError(f"tls.cert_file {tls.cert_file} and tls.key_file {tls.key_file}: not a PEM "
                         f"certificate and its private key ({exc.reason or exc})") from exc
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.ca_file)
        except ssl.SSLError as exc:
            raise ValueError(f"tls.ca_file {tls.ca_file}: no PEM CA certificate "
                             f"({exc.reason or exc})") from exc
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def _readable(files: dict[str, Path | None]) -> None:
    # ssl names neither the setting nor the file when one is missing ("[Errno 2] No such file")
    for setting, path in files.items():
        if path is not None and not path.is_file():
            raise ValueError(f"{setting} {path}: no such file")


def client_context(ca_file: Path | None, cert_file: Path | None = None,
                   key_file: Path | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A context for calling a TLS peer: its certificate verified, ours presented if given."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    _readable({"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file})
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return context
