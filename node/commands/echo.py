"""`lumbar-sentinel echo HOST PORT`: C-ECHO a DICOM node; exit status 0 when it answers success."""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from node.rejections import rejection_reason
from node.settings import Settings
from node.tls import client_context

log = logging.getLogger(__name__)

OK = 0
FAILED = 1
USAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--aet", default="ECHOSCU", help="our (calling) AE title (default ECHOSCU)")
    parser.add_argument("--aec", default=None,
                        help="the peer's (called) AE title (default: dicom.ae_title)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    parser.add_argument("--tls", action="store_true", help="use DICOM TLS")
    parser.add_argument("--ca-file", type=Path, default=None,
                        help="CA bundle to verify the peer with (default: tls.ca_file, else the system's)")
    parser.add_argument("--cert-file", type=Path, default=None, help="our client certificate (PEM)")
    parser.add_argument("--key-file", type=Path, default=None, help="our client private key (PEM)")
    parser.add_argument("--no-hostname-check", action="store_true",
                        help="verify the peer's certificate chain but not that it names HOST")
    parser.set_defaults(handler=run)


def _ae_title_problem(value: str) -> str | None:
    """Why pynetdicom would refuse ``value`` as an AE title (with a ValueError traceback), or None."""
    if not value.strip():
        return "must not be empty or only spaces"
    if len(value) > 16:
        return f"must be at most 16 characters, got {len(value)}"
    if any(not " " <= c <= "~" or c == "\\" for c in value):
        return "must be printable ASCII without backslashes"
    return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.port <= 65535:
        print(f"echo: port must be 1-65535, got {args.port}", file=sys.stderr)
        return USAGE
    for option, title in (("--aet", args.aet), ("--aec", args.aec)):
        problem = None if title is None else _ae_title_problem(title)
        if problem is not None:
            print(f"echo: {option} {title!r}: {problem}", file=sys.stderr)
            return USAGE
    if not args.timeout > 0:  # pynetdicom would log a warning and wait with its own default instead
        print(f"echo: --timeout must be a positive number of seconds, got {args.timeout}", file=sys.stderr)
        return USAGE
    ssl_context: ssl.SSLContext | None = None
    if args.tls:
        try:
            ssl_context = client_context(
                args.ca_file or settings.tls.ca_file, args.cert_file, args.key_file,
                check_hostname=not args.no_hostname_check,
            )
        except (ValueError, OSError, ssl.SSLError) as exc:
            print(f"echo: cannot set up TLS: {exc}", file=sys.stderr)
            return USAGE
    called = settings.dicom.ae_title if args.aec is None else args.aec
    return echo(args.host, args.port, calling=args.aet, called=called, timeout=args.timeout,
                ssl_context=ssl_context)


def echo(host: str, port: int, *, calling: str, called: str, timeout: float,
         ssl_context: ssl.SSLContext | None) -> int:
    """C-ECHO ``called`` at ``host:port``; print the outcome, return the exit status."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.add_requested_context(Verification)
    tls_args = (ssl_context, host) if ssl_context is not None else None
    where = f"{called} at {host}:{port}{' (TLS)' if ssl_context else ''}"
    try:
        assoc = ae.associate(host, port, ae_title=called, tls_args=tls_args)
    except OSError as exc:  # pynetdicom resolves the host before it connects, and lets this through
        print(f"echo: cannot resolve host {host!r}: {exc}", file=sys.stderr)
        return FAILED
    if assoc.is_rejected:
        rejection = assoc.acceptor.primitive
        words = "rejected" if rejection is None else rejection_reason(
            rejection.result, rejection.result_source, rejection.diagnostic)[0]
        print(f"echo: association with {where} {words}", file=sys.stderr)
        return FAILED
    if not assoc.is_established:
        print(f"echo: could not associate with {where}: no connection, TLS failure or abort",
              file=sys.stderr)
        return FAILED
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if "Status" not in status:
        print(f"echo: no C-ECHO response from {where} (timeout or abort)", file=sys.stderr)
        return FAILED
    if status.Status != 0x0000:
        print(f"echo: {where} answered C-ECHO with status 0x{status.Status:04X}", file=sys.stderr)
        return FAILED
    print(f"echo: {where} answered C-ECHO with success")
    return OK
