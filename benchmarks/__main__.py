"""``python -m benchmarks [--quick] [--only SECTION ...]``: every figure of issue 21 against its reference."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import analysis, ingest, large, latency, startup
from benchmarks.common import Figure, print_table

SECTIONS = ("startup", "ingest", "large", "analysis", "latency")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem / 1024**2:.1f} GB memory, load average {load}, "
            f"Python {platform.python_version()}, {platform.platform()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, 60 instances, no 500 MB object, no worker scaling")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--rounds", type=int, default=None, help="runs per figure (default 5, quick 2)")
    parser.add_argument("--instances", type=int, default=None, help="ingest study size (default 300)")
    parser.add_argument("--pg-url", default=os.environ.get("LSENT_BENCH_PG_URL", DEFAULT_PG),
                        help="PostgreSQL admin URL; '' to skip PostgreSQL")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    instances = args.instances or (60 if args.quick else 300)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    print(f"machine: {machine()}")
    print(f"mode: {'quick' if args.quick else 'full'}, {rounds} rounds")
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="lsent-bench-", dir=args.work) as tmp:
        work = Path(tmp)
        steps: dict[str, Callable[[], list[Figure]]] = {
            "startup": lambda: startup.run(work / "startup", rounds=max(rounds, 3), log=log),
            "ingest": lambda: ingest.run(work / "ingest", instances=instances, rounds=rounds,
                                         pg_url=args.pg_url or None, log=log),
            "large": lambda: large.run(work / "large", megabytes=100 if args.quick else 500, log=log),
            "analysis": lambda: analysis.run(work / "analysis", rounds=rounds, quick=args.quick,
                                             pg_url=args.pg_url or None, log=log),
            "latency": lambda: latency.run(work / "latency", rounds=rounds, log=log),
        }
        for section in args.only:
            (work / section).mkdir(parents=True, exist_ok=True)
            figures += steps[section]()
    print()
    print_table(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
