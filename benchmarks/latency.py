"""Study latency: last instance acknowledged -> last result object acknowledged at a destination.

Needs the node to deliver results to a PACS; until that exists the figure is
skipped with a message instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import node
from benchmarks.common import Figure


def delivery_available() -> bool:
    # the folder of this tree's node package, not find_spec: an editable install of another
    # checkout in the same virtual environment can answer for node.delivery
    return (Path(node.__file__).parent / "delivery").is_dir()


def run(log: Callable[[str], None]) -> list[Figure]:
    if not delivery_available():
        log("latency: skipped, this tree has no result delivery (node.delivery): nothing is sent "
            "to a destination, so there is no 'last result object acknowledged' to time")
        return [Figure("study latency", "last instance -> last result acked, minus quiet period", "s",
                       "target 15 s", False, note="skipped: no result delivery in this tree")]
    log("latency: node.delivery exists but this benchmark does not drive it yet")
    return [Figure("study latency", "last instance -> last result acked, minus quiet period", "s",
                   "target 15 s", False, note="not measured: delivery exists, benchmark to be wired")]
