"""Re-draw the README's phantom pictures: `python scripts/render_readme_images.py`.

A normal phantom and an abnormal one (L1 benign grade-2 compression fracture,
focal L3 lesion, L4 lesion with epidural extension), mid-sagittal T1, T2, STIR.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from node.cli import main

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
STUDIES = {
    "phantom-normal.png": ["--seed", "1"],
    "phantom-abnormal.png": [
        "--seed", "2", "--lesion", "L3:focal", "--lesion", "L4:focal:epidural", "--fracture", "L1:2:benign",
    ],
}


def render() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, options in STUDIES.items():
        with tempfile.TemporaryDirectory() as tmp:
            status = main(["phantom", str(Path(tmp) / "study"), "--preview", *options])
            if status:
                return status
            shutil.copyfile(Path(tmp) / "study" / "preview.png", IMAGES / name)
        print(f"wrote {IMAGES / name}")
    return 0


if __name__ == "__main__":
    sys.exit(render())
