"""`lumbar-sentinel phantom OUT_DIR`: write a synthetic (or real-anatomy) lumbar MRI study.

Examples::

    lumbar-sentinel phantom out/ --lesion L3:focal --fracture L1:2:benign --seed 7
    lumbar-sentinel phantom out/ --lesion L2:focal:epidural --fracture L4:3:malignant:crush \\
        --contrast --axial --enhanced --compression j2k
    lumbar-sentinel phantom out/ --from-volume VB2_02_image.nii.gz --labels VB2_02_labels.nii.gz \\
        --lesion L3:diffuse
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from analysis.volume import LEVEL_LABELS, Sequence
from phantom.implants import (
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantSpec,
    LesionKind,
    LesionSpec,
)
from phantom.output import mid_sagittal_png, write_outputs
from phantom.render import SagittalGrid
from phantom.study import build_phantom
from phantom.writer import COMPRESSIONS, PhantomWriteError, StudyIdentity

OK, FAILED, USAGE = 0, 1, 2

# Arguments that do not change the DICOM objects written; every other one enters the UIDs.
_NOT_CONTENT = frozenset({"out_dir", "preview", "command", "handler", "config", "log_level"})
_SOURCE_FILES = frozenset({"from_volume", "labels"})


def _label(token: str) -> int:
    if token.isdigit():
        return int(token)
    if token.upper() not in LEVEL_LABELS:
        raise argparse.ArgumentTypeError(
            f"unknown level {token!r} (use {', '.join(LEVEL_LABELS)} or a label number)"
        )
    return LEVEL_LABELS[token.upper()]


def parse_lesion(text: str) -> LesionSpec:
    """``LEVEL:KIND[:EXTENSION][:pedicles][:nonenhancing]``, e.g. ``L3:focal``, ``L1:focal:epidural``."""
    parts = [p.strip().lower() for p in text.split(":")]
    if len(parts) < 2:
        raise argparse.ArgumentTypeError(f"lesion {text!r}: expected LEVEL:KIND, e.g. L3:focal")
    try:
        kind = LesionKind(parts[1])
        extension, pedicles, enhancing = Extension.NONE, False, True
        for token in parts[2:]:
            if token == "pedicles":
                pedicles = True
            elif token == "nonenhancing":
                enhancing = False
            else:
                extension = Extension(token)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"lesion {text!r}: {exc}") from exc
    return LesionSpec(_label(parts[0]), kind, extension, pedicles=pedicles, enhancing=enhancing)


def parse_fracture(text: str) -> FractureSpec:
    """``LEVEL:GRADE[:benign|malignant][:wedge|biconcave|crush][:fluid][:noretropulsion]``."""
    parts = [p.strip().lower() for p in text.split(":")]
    if len(parts) < 2 or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(f"fracture {text!r}: expected LEVEL:GRADE, e.g. L1:2:benign")
    pattern, shape, fluid, retro = FracturePattern.BENIGN, FractureShape.WEDGE, False, None
    for token in parts[2:]:
        if token in {p.value for p in FracturePattern}:
            pattern = FracturePattern(token)
        elif token in {s.value for s in FractureShape}:
            shape = FractureShape(token)
        elif token == "fluid":
            fluid = True
        elif token == "noretropulsion":
            retro = 0.0
        else:
            raise argparse.ArgumentTypeError(f"fracture {text!r}: unknown option {token!r}")
    try:
        return FractureSpec(_label(parts[0]), int(parts[1]), shape, pattern, fluid, retro)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"fracture {text!r}: {exc}") from exc


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", type=Path, help="folder for dicom/, truth.json and labels.nii.gz")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same study (default 0)")
    parser.add_argument(
        "--lesion",
        action="append",
        type=parse_lesion,
        default=[],
        metavar="LEVEL:KIND[:EXT]",
        help="marrow lesion, e.g. L3:focal, L4:diffuse, L1:focal:epidural, L2:focal:paravertebral",
    )
    parser.add_argument(
        "--fracture",
        action="append",
        type=parse_fracture,
        default=[],
        metavar="LEVEL:GRADE[:PATTERN][:SHAPE]",
        help="compression fracture, e.g. L1:2:benign, L4:3:malignant:crush, L2:1:benign:biconcave:fluid",
    )
    parser.add_argument("--contrast", action="store_true", help="add a post-contrast sagittal T1")
    parser.add_argument("--axial", action="store_true", help="add an axial T2 stack (L3-S1)")
    parser.add_argument(
        "--enhanced", action="store_true", help="Enhanced MR Image Storage (one multi-frame object)"
    )
    parser.add_argument(
        "--compression",
        choices=sorted(COMPRESSIONS),
        default="none",
        help="lossless transfer syntax: rle, jpegls, j2k, jpeg (1.2.840.10008.1.2.4.70, DCMTK)",
    )
    parser.add_argument("--preview", action="store_true", help="also write preview.png (mid-sagittal slices)")
    parser.add_argument("--slices", type=int, default=15, help="sagittal slices (default 15)")
    parser.add_argument(
        "--thickness", type=float, default=3.5, help="sagittal slice thickness, mm (default 3.5)"
    )
    parser.add_argument("--matrix", type=int, default=320, help="in-plane matrix (default 320)")
    parser.add_argument("--pixel", type=float, default=0.9, help="in-plane pixel size, mm (default 0.9)")
    parser.add_argument(
        "--from-volume",
        type=Path,
        default=None,
        metavar="IMAGE.nii.gz",
        help="wrap a real sagittal volume instead of the synthetic anatomy",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="LABELS.nii.gz",
        help="vertebral-body labels of --from-volume",
    )
    parser.add_argument(
        "--sequence",
        choices=[s.value for s in (Sequence.T1, Sequence.T2, Sequence.STIR)],
        default=None,
        help="sequence of --from-volume (default: manifest.json beside it)",
    )
    parser.add_argument("--slice-step", type=int, default=3, help="keep every n-th slice of --from-volume")
    parser.set_defaults(handler=lambda args, _settings: run(args))


def content_key(args: argparse.Namespace) -> str:
    """A digest of every argument that shapes the study, source files by their bytes.

    The same command gives the same key (and UIDs); any other seed, implant,
    sequence, grid, encoding or source volume gives another.
    """
    params: dict[str, Any] = {}
    for name, value in sorted(vars(args).items()):
        if name in _NOT_CONTENT or callable(value):
            continue
        if name in _SOURCE_FILES and value is not None:
            value = hashlib.sha256(Path(value).read_bytes()).hexdigest()
        params[name] = value
    # the specs are frozen dataclasses of enums and numbers: their repr is stable
    encoded = json.dumps(params, sort_keys=True, default=repr).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def run(args: argparse.Namespace) -> int:
    spec = ImplantSpec(lesions=tuple(args.lesion), fractures=tuple(args.fracture))
    rng = np.random.default_rng(args.seed)
    try:
        key = content_key(args)
    except OSError as exc:
        print(f"lumbar-sentinel phantom: {exc}", file=sys.stderr)
        return FAILED
    identity = StudyIdentity.synthetic(args.seed, content=key)
    extra: dict[str, Any] = {"seed": args.seed, "uid_key": key}
    try:
        if args.from_volume is not None:
            from phantom.wrap import load_volume, wrap_volume

            if args.labels is None:
                print("lumbar-sentinel phantom: --from-volume needs --labels", file=sys.stderr)
                return USAGE
            source = load_volume(
                args.from_volume, args.labels, Sequence(args.sequence) if args.sequence else None
            )
            study = wrap_volume(
                source.image,
                source.labels,
                source.sequence,
                spec,
                rng,
                args.slice_step,
                source.acquisition,
                f"SAG {source.sequence.value} {source.name}",
            )
            extra["source"] = {
                "image": str(args.from_volume),
                "labels": str(args.labels),
                "case": source.name,
            }
        else:
            sequences = (Sequence.T1, Sequence.T2, Sequence.STIR) + ((Sequence.T1C,) if args.contrast else ())
            grid = SagittalGrid(args.slices, args.thickness, args.matrix, args.matrix, args.pixel)
            study = build_phantom(spec, rng, sequences, axial=args.axial, grid=grid)
        truth = write_outputs(study, args.out_dir, identity, args.enhanced, args.compression, extra)
        if args.preview:
            mid_sagittal_png(study, args.out_dir / "preview.png")
    except (ValueError, OSError, PhantomWriteError) as exc:
        print(f"lumbar-sentinel phantom: {exc}", file=sys.stderr)
        return FAILED
    study_truth = truth["study"]
    print(
        f"wrote {sum(s['instances'] for s in truth['series'])} objects in {len(truth['series'])} series to "
        f"{args.out_dir}; suspicious levels: {study_truth['suspicious_level_count']}"
    )
    return OK


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command on its own (``python -m phantom.cli OUT_DIR ...``)."""
    parser = argparse.ArgumentParser(prog="lumbar-sentinel phantom")
    configure(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
