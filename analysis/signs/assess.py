"""Entry point: every sign of malignancy at every level of one study."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from analysis.results import SignState, SpineSegmentation
from analysis.signs.canal import CanalReading, canal_compromise, canal_sequence, csf_reference, read_canal
from analysis.signs.context import BodyCrop, StudyContext, body_view, build_context, crop_body
from analysis.signs.extent import ExtentResult, assess_extent, no_extent
from analysis.signs.fracture import FractureResult, assess_fracture, band_like
from analysis.signs.marrow import MarrowResult, assess_marrow, with_candidate
from analysis.signs.outside import mass_lesion
from analysis.signs.regions import ReferenceRegions
from analysis.signs.single import limit_extent, limit_level, limit_pedicle
from analysis.signs.types import LevelSigns
from analysis.thresholds import DEFAULT_THRESHOLDS, SignThresholds
from analysis.volume import Sequence, Volume


class _BodyRead(NamedTuple):
    level: str
    label: int
    view: StudyContext  # the study as this body is seen (body_view)
    crop: BodyCrop
    marrow: MarrowResult
    canal: CanalReading


def assess_signs(
    volumes: Mapping[Sequence, Volume],
    segmentation: SpineSegmentation,
    regions: ReferenceRegions | None = None,
    thresholds: SignThresholds = DEFAULT_THRESHOLDS,
    footprints: Mapping[Sequence, Volume] | None = None,
) -> tuple[LevelSigns, ...]:
    """Signs per level, top to bottom, for the bodies in ``segmentation``.

    ``volumes`` maps each available sagittal sequence to its volume on the
    grid of ``segmentation.labels``. ``regions`` are reference tissue masks
    (discs, muscle); when None the discs are derived from the label map.
    ``footprints`` say where on that grid each sequence has image
    (:func:`analysis.sitk_adapter.footprint_like`); a body is read only on the
    sequences that cover it. None: every sequence covers the whole grid.
    """
    if isinstance(segmentation, SpineSegmentation) and segmentation.outlines is not None:
        if segmentation.outlines.array.shape != segmentation.labels.array.shape:
            raise ValueError("segmentation.outlines must be on the grid of segmentation.labels")
        # a lesion the network left out of a body's mask is looked for in its outline
        segmentation = replace(segmentation, labels=segmentation.outlines)
    ctx = build_context(volumes, segmentation, regions, thresholds, footprints)
    # first the marrow and the canal of every body: the study's CSF signal, read from the
    # canal at every level, tells the sac from lesion tissue when a lesion's spread is followed
    read: list[_BodyRead] = []
    for level, label in ctx.order:
        view = body_view(ctx, label)
        crop = crop_body(view, level, label)
        if crop is not None:
            read.append(_BodyRead(level, label, view, crop, assess_marrow(view, crop),
                                  read_canal(view, crop)))
    csf = csf_reference([r.canal for r in read])
    views = {r.label: r.view for r in read}
    partial: list[tuple[str, int, MarrowResult, ExtentResult, FractureResult, float | None,
                        np.ndarray | None]] = []
    for level, label, view, crop, marrow, canal_reading in read:
        # a lesion that counts only with the mass it shows: its spread, once measured, is kept
        spread: ExtentResult | None = None
        if marrow.mass_candidate is not None:
            confirmed = with_candidate(crop, marrow, thresholds)
            trial = assess_extent(view, crop, confirmed, csf)
            if trial.soft_tissue == SignState.PRESENT:
                marrow, spread = confirmed, trial
        from_outside = mass_lesion(view, crop, marrow)
        if from_outside is not None:
            trial = assess_extent(view, crop, from_outside, csf)
            if trial.soft_tissue == SignState.PRESENT:  # else: tissue against the wall, no lesion
                marrow, spread = from_outside, trial
        band = marrow.pattern == "focal" and band_like(
            marrow.lesion, crop.body, thresholds.band_max_height_frac, thresholds.band_min_ap_frac)
        # a thin band under an endplate does not spread: growing its signature
        # outward only finds look-alike soft tissue (psoas, disc)
        if band:
            extent = no_extent(marrow)
        else:
            extent = spread if spread is not None else assess_extent(view, crop, marrow, csf)
        extent = limit_extent(view, level, extent)
        fracture = assess_fracture(view, crop, segmentation.body(level), marrow, extent, band)
        lesion_full = None
        if marrow.lesion.any():
            lesion_full = np.zeros(view.labels.shape, dtype=bool)
            lesion_full[crop.slices] = marrow.lesion
        partial.append((level, label, marrow, extent, fracture, canal_reading.diameter_mm, lesion_full))

    canal = canal_compromise(
        [p[0] for p in partial],
        [p[5] for p in partial],
        [_epidural(p[3]) for p in partial],
        canal_sequence(ctx) is not None,
        thresholds,
    )
    out = []
    for (level, label, marrow, extent, fracture, diameter, lesion_full), (canal_state, narrowed) in zip(
        partial, canal, strict=True
    ):
        out.append(_level(views[label], segmentation, level, label, marrow, extent, fracture, diameter,
                          canal_state, narrowed, lesion_full))
    return tuple(out)


def _level(
    ctx: StudyContext,
    segmentation: SpineSegmentation,
    level: str,
    label: int,
    marrow: MarrowResult,
    extent: ExtentResult,
    fracture: FractureResult,
    diameter: float | None,
    canal_state: SignState,
    narrowed: bool,
    lesion_full: np.ndarray | None,
) -> LevelSigns:
    reasons = list(marrow.reasons) + list(extent.reasons) + list(fracture.reasons)
    marrow_state = marrow.state
    if fracture.benign_band and marrow_state == SignState.PRESENT:
        # A thin band under the endplate is the marrow reaction of a fracture or
        # of disc degeneration (Modic type 1), not tumour replacing fat.
        marrow_state = SignState.ABSENT
        reasons.append(f"{level}: band-like subendplate signal change (benign pattern: fracture edema "
                       "or Modic type 1), not counted as infiltration")
    marrow_state, pathologic, single = limit_level(ctx, level, marrow_state, marrow, fracture)
    reasons += single
    malignant = (marrow_state, extent.cortex, extent.soft_tissue, pathologic)
    if SignState.PRESENT in malignant:
        suspicious = SignState.PRESENT
    elif all(s == SignState.ABSENT for s in malignant):
        suspicious = SignState.ABSENT
    else:
        suspicious = SignState.INDETERMINATE
    if canal_state == SignState.INDETERMINATE and canal_sequence(ctx) is None:
        reasons.append(f"{level}: {ctx.lacking(Sequence.T2, Sequence.STIR)}: canal diameter not measured")
    body = segmentation.body(level)
    mask = None
    if lesion_full is not None:
        mask = segmentation.labels.with_array(ctx.frame.from_canonical(lesion_full).astype(np.uint8))
    return LevelSigns(
        level=level,
        label=label,
        marrow_infiltration=marrow_state,
        marrow_t1=marrow.t1_state,
        marrow_fluid=marrow.fluid_state,
        enhancement=marrow.enhancement,
        marrow_pattern=marrow.pattern,
        lesion_fraction_pct=marrow.fraction_pct,
        lesion_count=marrow.lesion_count,
        t1_marrow_disc_ratio=marrow.t1_disc_ratio,
        t1_marrow_muscle_ratio=marrow.t1_muscle_ratio,
        pedicle_involvement=limit_pedicle(ctx, marrow_state, extent.pedicle),
        cortical_destruction=extent.cortex,
        soft_tissue_extension=extent.soft_tissue,
        ste_locations=extent.locations,
        ste_volume_ml=extent.ste_volume_ml,
        ste_extent_mm=extent.ste_extent_mm,
        compression_fracture=fracture.compression,
        pathologic_fracture_pattern=pathologic,
        fracture_features=fracture.features,
        canal_diameter_mm=diameter,
        canal_compromise=canal_state,
        canal_narrowed=narrowed,
        suspicious_for_malignancy=suspicious,
        genant_grade=None if body is None else body.genant_grade,
        height_loss_pct=None if body is None else body.height_loss_pct,
        ha_mm=None if body is None else body.ha_mm,
        hm_mm=None if body is None else body.hm_mm,
        hp_mm=None if body is None else body.hp_mm,
        reasons=tuple(dict.fromkeys(reasons)),
        lesion_mask=mask,
        marrow_stir_t1_quotient=marrow.stir_t1_quotient if marrow_state == SignState.PRESENT else None,
        marrow_quotient_focal=marrow.quotient_focal and marrow_state == SignState.PRESENT,
    )


def _epidural(extent: ExtentResult) -> SignState:
    if extent.soft_tissue == SignState.INDETERMINATE:
        return SignState.INDETERMINATE
    return SignState.PRESENT if "epidural" in extent.locations else SignState.ABSENT
