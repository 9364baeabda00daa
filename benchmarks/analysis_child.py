"""One analysis process: ``python -m benchmarks.analysis_child STUDY_DIR [--repeat N]``.

Prints one JSON line: seconds to import and load the model, wall and CPU
seconds per analysis (study files -> findings), and the process's peak RSS.
On a shared machine the CPU seconds are what the study costs one core. Run by
``benchmarks.analysis`` pinned to one core.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.common import peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("study", type=Path)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    from node.pipeline.inputs import load_inputs
    from node.pipeline.model import shipped_model
    from node.pipeline.run import analyse
    from node.study import group_dicom_folder

    model = shipped_model()
    loaded = time.perf_counter() - start
    seconds = []
    cpu_seconds = []
    bodies = 0
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        (study,) = group_dicom_folder(args.study).studies
        output = analyse(load_inputs(study), model)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
        bodies = len(output.segmentation.bodies)
    print(json.dumps({
        "load_seconds": loaded,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "bodies": bodies,
        # VmHWM of this process image: ru_maxrss would carry the benchmark's own peak
        # across the exec (Linux keeps it), 1090 MB after the 500 MB object was written
        "peak_mb": peak_rss_mb(os.getpid()),
    }))


if __name__ == "__main__":
    main()
