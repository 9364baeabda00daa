"""Logging as every process of the node sets it up (the CLI, extra receiver processes)."""

from __future__ import annotations

import logging
import sys
import warnings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pynetdicom logs every PDU at INFO; keep its noise at WARNING.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # pydicom reports every odd value it reads as a log record and again as a warning printed to
    # stderr, often quoting the value (a patient's name, say); the refusal line says what matters.
    logging.getLogger("pydicom").setLevel(max(logging.ERROR, logging.getLevelName(level)))
    warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
    # Alembic names each of its plug-ins at INFO on every start; the upgrades it runs are kept.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # highdicom names at INFO every attribute module it copies into each result object it builds,
    # and its warnings quote the values it finds odd, a patient's name among them.
    logging.getLogger("highdicom").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
