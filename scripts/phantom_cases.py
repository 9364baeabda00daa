"""Synthetic phantom studies as training and evaluation cases for the vertebral-body analysis.

Training phantoms use seeds from ``TRAIN_PHANTOM_SEED``, evaluation phantoms
from ``EVAL_PHANTOM_SEED``: the two sets never share a seed. Each phantom gets
random implants (compression fractures of Genant grade 1-3, benign or
malignant, wedge, biconcave or crush; marrow lesions with or without
extension), drawn from its own seed, so every run is reproducible.
"""

from __future__ import annotations

import numpy as np
from vertebrae_cases import Case

from analysis.volume import Sequence, Volume
from phantom.render import SagittalGrid
from phantom.specs import (
    Extension,
    FracturePattern,
    FractureShape,
    FractureSpec,
    ImplantSpec,
    LesionKind,
    LesionSpec,
)
from phantom.study import PhantomStudy, build_phantom

TRAIN_PHANTOM_SEED = 1000
FRACTURE_PHANTOM_SEED = 3000  # fracture-rich training phantoms
EVAL_PHANTOM_SEED = 5000
IMPLANT_SEED = 9000  # implants into the real training cases
SEQUENCES = (Sequence.T1, Sequence.T2, Sequence.STIR)
_FRACTURE_LABELS = (19, 20, 21, 22, 23, 24)  # T12..L5
_LESION_LABELS = (18, 19, 20, 21, 22, 23, 24)


def random_fracture(label: int, rng: np.random.Generator) -> FractureSpec:
    """A compression fracture of ``label``: any grade, shape and pattern, a fluid sign 30 % of the time."""
    return FractureSpec(
        label=label,
        grade=int(rng.integers(1, 4)),
        shape=FractureShape(str(rng.choice([s.value for s in FractureShape]))),
        pattern=FracturePattern(str(rng.choice([p.value for p in FracturePattern]))),
        fluid_sign=bool(rng.random() < 0.3),
    )


def random_spec(rng: np.random.Generator) -> ImplantSpec:
    """0-2 compression fractures and 0-2 marrow lesions at random levels."""
    n_fx = int(rng.choice([0, 1, 1, 2]))
    fx_labels = rng.choice(_FRACTURE_LABELS, n_fx, replace=False)
    fractures = tuple(random_fracture(int(lab), rng) for lab in fx_labels)
    free = [lab for lab in _LESION_LABELS if lab not in set(int(v) for v in fx_labels)]
    n_les = int(rng.choice([0, 1, 2]))
    lesions = tuple(
        LesionSpec(
            label=int(lab),
            kind=LesionKind(str(rng.choice([k.value for k in LesionKind]))),
            extension=Extension(str(rng.choice([e.value for e in Extension]))),
        )
        for lab in rng.choice(free, n_les, replace=False)
    )
    return ImplantSpec(lesions=lesions, fractures=fractures)


def real_spec(labels: np.ndarray, rng: np.random.Generator) -> ImplantSpec:
    """One or two implants in the bodies T11-L5 of a real case: a fracture or a lesion each."""
    present = [lab for lab in _LESION_LABELS if (labels == lab).any()]
    chosen = rng.choice(present, min(len(present), int(rng.integers(1, 3))), replace=False)
    fractures: list[FractureSpec] = []
    lesions: list[LesionSpec] = []
    for lab in (int(v) for v in chosen):
        if rng.random() < 0.5:
            fractures.append(random_fracture(lab, rng))
        else:
            lesions.append(
                LesionSpec(
                    label=lab,
                    kind=LesionKind(str(rng.choice([k.value for k in LesionKind]))),
                    extension=Extension(str(rng.choice([e.value for e in Extension]))),
                    pedicles=bool(rng.random() < 0.3),
                )
            )
    return ImplantSpec(lesions=tuple(lesions), fractures=tuple(fractures))


def implanted_real_cases(cases: list[Case], copies: int, seed: int = IMPLANT_SEED) -> list[Case]:
    """``copies`` of each real case with random fractures and lesions implanted (truth follows)."""
    from phantom.implants import implant

    rng = np.random.default_rng(seed)
    out: list[Case] = []
    for case in cases:
        ((seq, vol),) = case.volumes.items()
        labels = np.asarray(case.truth.array)
        for n in range(copies):
            spec = real_spec(labels, rng)
            res = implant({seq: np.asarray(vol.array)}, labels, vol.spacing_kji, spec, rng)
            out.append(
                Case(
                    name=f"{case.name}+implant{n}",
                    dataset=case.dataset,
                    group=case.group,
                    volumes={seq: vol.with_array(res.images[seq])},
                    truth=case.truth.with_array(np.asarray(res.labels).astype(labels.dtype)),
                    levels_known=case.levels_known,
                )
            )
    return out


def fracture_spec(rng: np.random.Generator) -> ImplantSpec:
    """Two or three compression fractures (any grade, shape, pattern) and at most one lesion."""
    spec = random_spec(rng)
    labels = rng.choice(_FRACTURE_LABELS, int(rng.integers(2, 4)), replace=False)
    fractures = tuple(random_fracture(int(lab), rng) for lab in labels)
    lesions = tuple(les for les in spec.lesions[:1] if les.label not in set(int(v) for v in labels))
    return ImplantSpec(lesions=lesions, fractures=fractures)


def random_grid(rng: np.random.Generator) -> SagittalGrid:
    """A plausible clinical sagittal grid (training variety: pixel size, slice spacing, coverage)."""
    pixel = float(rng.choice([0.8, 0.9, 1.0]))
    n = round(288.0 / pixel)
    return SagittalGrid(
        n_slices=int(rng.integers(13, 18)), slice_mm=float(rng.choice([3.0, 3.5, 4.0])), rows=n, cols=n,
        pixel_mm=pixel,
    )  # fmt: skip


def phantom_study(seed: int, vary_grid: bool = False, fractures: bool = False) -> PhantomStudy:
    rng = np.random.default_rng(seed)
    spec = fracture_spec(rng) if fractures else random_spec(rng)
    grid = random_grid(rng) if vary_grid else None
    return build_phantom(spec, rng, sequences=SEQUENCES, grid=grid)


def study_volumes(study: PhantomStudy) -> dict[Sequence, Volume]:
    """Every sagittal series of a phantom as a Volume on the label grid."""
    g = study.labels
    return {s.sequence: Volume(s.pixels, g.spacing, g.origin, g.direction) for s in study.series}


def phantom_cases(n: int, first_seed: int = TRAIN_PHANTOM_SEED, fractures: bool = False) -> list[Case]:
    """Training images: each sequence of each phantom a separate case of one group."""
    out: list[Case] = []
    for seed in range(first_seed, first_seed + n):
        study = phantom_study(seed, vary_grid=True, fractures=fractures)
        for seq, vol in study_volumes(study).items():
            out.append(
                Case(
                    name=f"phantom{seed}_{seq.value}",
                    dataset="phantom",
                    group=f"phantom{seed}",
                    volumes={seq: vol},
                    truth=study.labels,
                    levels_known=True,
                )
            )
    return out
