"""`lumbar-sentinel health`: ask this host's node process for its /healthz (a container health check).

Reads ``metrics.host`` and ``metrics.port`` from the same settings the
process runs with; exits 0 when the answer is 200, 1 otherwise, 2 when the
endpoint is switched off.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import math
import sys
import urllib.error
import urllib.request

from node.settings import Settings

log = logging.getLogger(__name__)

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        print(f"lumbar-sentinel health: --timeout must be a positive number of seconds, got {args.timeout}",
              file=sys.stderr)
        return 2
    if not settings.metrics.enabled:
        log.error("metrics.enabled is false: this node serves no /healthz")
        return 2
    host = "127.0.0.1" if settings.metrics.host in _ANY_ADDRESS else settings.metrics.host
    url = f"http://{host}:{settings.metrics.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.read().decode())
        return 1
    except OSError as exc:
        print(f"lumbar-sentinel health: {url}: {exc}", file=sys.stderr)
        return 1
    except http.client.HTTPException as exc:
        # Its text is the peer's raw bytes, control characters included: not for a terminal.
        print(f"lumbar-sentinel health: {url}: the answer is not HTTP ({type(exc).__name__}): "
              "is metrics.port another service's port?", file=sys.stderr)
        return 1
