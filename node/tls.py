"""DICOM TLS contexts (PS3.15 BCP 195, TLS 1.2 or later), for the receiver and for callers.

Outside ``node.receiver`` so that `echo` builds its client context without
importing the receiver, the database and Alembic.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from node.settings import TlsSettings


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    """The receiver's context: its certificate, and client certificates checked against ``ca_file``."""
    if not tls.enabled or tls.cert_file is None or tls.key_file is None:
        raise ValueError("tls: server_context needs tls.enabled with cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=tls.cert_file, keyfile=tls.key_file)
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(ca_file: Path | None, cert_file: Path | None = None,
                   key_file: Path | None = None, check_hostname: bool = True) -> ssl.SSLContext:
    """A context for calling a TLS peer: its certificate verified, ours presented if given."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return context
