"""Benchmark the vertebra analysis: wall time per series and peak memory.

    .venv/bin/python scripts/bench_analysis.py [--cases VB2_02 VB3_01] [--save-baseline b.json]
    .venv/bin/python scripts/bench_analysis.py --baseline b.json   # prints ratios against it

Each series is the realistic 3 mm-slice version of a shared real case (the same
loader as the evaluation) plus the SCT T2 volume. Peak memory is the Python
heap peak of each run (tracemalloc: numpy buffers included) and the process's
maximum resident set size at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path

import SimpleITK as sitk
from evaluate_vertebrae import REPO, list_cases, load_case

from analysis.sitk_adapter import volume_from_image
from analysis.vertebrae.pipeline import segment_spine
from analysis.volume import Sequence, Volume
from node.pipeline.model import shipped_model

SCT = REPO.parent / "shared" / "data" / "sct-t2-lumbar" / "t2_lumbar.nii.gz"
DEFAULT_CASES = ("VB1_02", "VB2_02", "VB3_01")


def series(cases: list[str]) -> list[tuple[str, dict[Sequence, Volume]]]:
    out = [(c.name, c.volumes) for c in (load_case(e) for e in list_cases() if e["case"] in cases)]
    if SCT.exists():
        out.append(("SCT_T2", {Sequence.T2: volume_from_image(sitk.ReadImage(str(SCT)))}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="*", default=list(DEFAULT_CASES))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--save-baseline", type=Path)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    model = shipped_model()
    baseline = json.loads(args.baseline.read_text()) if args.baseline else {}
    results: dict[str, dict[str, float]] = {}
    for name, volumes in series(args.cases):
        times = []
        peak = 0
        for _ in range(args.repeat):
            tracemalloc.start()
            t0 = time.perf_counter()
            segment_spine(volumes, model)
            times.append(time.perf_counter() - t0)
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        shape = next(iter(volumes.values())).array.shape
        results[name] = {"seconds": min(times), "peak_mb": peak / 1e6}
        line = f"{name:<8} shape={shape!s:<16} time {min(times):6.2f} s  peak heap {peak / 1e6:7.1f} MB"
        if name in baseline:
            b = baseline[name]
            time_ratio = min(times) / b["seconds"]
            mem_ratio = peak / 1e6 / b["peak_mb"]
            line += f"  | vs baseline: time x{time_ratio:.2f}, memory x{mem_ratio:.2f}"
        print(line, flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS {rss_mb:.0f} MB")
    if args.save_baseline:
        args.save_baseline.write_text(json.dumps(results, indent=2))
        print(f"baseline written to {args.save_baseline}")


if __name__ == "__main__":
    main()
