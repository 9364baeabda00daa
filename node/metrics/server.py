"""The HTTP endpoint of a `serve` or `worker` process: ``/metrics`` and ``/healthz``.

:class:`Telemetry` is everything one process measures, built from the
settings and handed to the parts that count; its HTTP server runs only when
``metrics.enabled``.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.orm import Session, sessionmaker

from node.metrics.collector import DatabaseCollector
from node.metrics.health import HealthCheck
from node.metrics.jobs import JobMetrics
from node.metrics.receiving import ReceiverMetrics
from node.settings import Settings

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, health: HealthCheck) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.health = health


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path == "/healthz":
            health = self.server.health.run()
            body = json.dumps(health.as_json(), indent=2).encode()
            self._answer(200 if health.ok else 503, "application/json", body)
        else:
            self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class Telemetry:
    """One process's metrics registry, its counters, and (if enabled) the HTTP endpoint."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings.metrics
        self.registry = CollectorRegistry()
        self.receiver = ReceiverMetrics(self.registry)
        self.jobs = JobMetrics(self.registry)
        self.registry.register(DatabaseCollector(sessions))
        self.health = HealthCheck(sessions, (settings.storage.root, settings.storage.results),
                                  settings.metrics.queue_stuck_after)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the endpoint listens (the real port when configured as 0), or None."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen when enabled; an OSError (port taken) is logged with the address and raised."""
        if not self._settings.enabled or self._server is not None:
            return
        address = (self._settings.host, self._settings.port)
        try:
            self._server = _Server(address, self.registry, self.health)
        except OSError as exc:
            log.error("cannot serve /metrics and /healthz on %s:%d: %s", *address, exc)
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics http", daemon=True)
        self._thread.start()
        host, port = self.address or address
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
