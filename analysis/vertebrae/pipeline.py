"""Entry point: every sagittal series of a study in, one named and measured spine out.

``segment_spine(volumes, model)`` draws the bodies on one series (the
"primary": T2, else STIR, T1, Dixon, post-contrast T1, other) and uses every
other series of the study too: each is resampled onto the primary grid (they
share the frame of reference) and the network's probabilities are averaged
over sequences, so a body missed on one contrast can still be found on another.
Each body's heights are measured on its mid-sagittal section redrawn at native
resolution by the model's section refiners (:mod:`~analysis.vertebrae.refine`),
when it has any.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from analysis.results import BodyMeasurement, SpineSegmentation
from analysis.sitk_adapter import footprint_like, resample_like
from analysis.vertebrae.features import FloatArray
from analysis.vertebrae.geometry import Canonical, canonical_of, canonical_to_lps
from analysis.vertebrae.inference import Network
from analysis.vertebrae.levels import VERSE_LABELS, Naming, name_chain
from analysis.vertebrae.measure import (
    UNGRADED_LEVELS,
    Heights,
    body_heights,
    chain_axes,
    deformities,
    heights_2d,
)
from analysis.vertebrae.model import BodyModel, predict_work
from analysis.vertebrae.refine import SECTION_PX, refined_section
from analysis.vertebrae.second_look import sacral_second_look, second_look
from analysis.vertebrae.segment import BodyCandidate, probabilities_to_native, split_bodies
from analysis.volume import Sequence, Volume, content_box_of

_MIN_MEASURABLE_ML = 8.0
_MIN_MEASURABLE_PROB = 0.6
_MIN_MEASURABLE_HEIGHT_MM = 10.0
_MIN_SECTION_MM2 = 100.0  # a redrawn section smaller than this is no body: the mask is measured
# A redrawn section under this share of the mask's section means the refiner lost part of the
# body (replaced marrow, fluid), not that the mask filled a collapse: see section_heights
_MIN_SECTION_SHARE = 0.6
# S1 is looked for again when the first look found none or a piece under half the size of
# the chain's median body: on the implanted evaluation studies a lesion that kept 0.4 of S1
# in the mask (VB1_02+03 #28, 11.7 of 21 ml) hid the lesion from the signs
_SMALL_S1_FRACTION = 0.5

PRIMARY_ORDER: tuple[Sequence, ...] = (
    Sequence.T2,
    Sequence.STIR,
    Sequence.T1,
    Sequence.DIXON,
    Sequence.T1C,
    Sequence.OTHER,
)


def primary_sequence(volumes: Mapping[Sequence, Volume]) -> Sequence:
    """The sequence whose grid the labels are drawn on."""
    for seq in PRIMARY_ORDER:
        if seq in volumes:
            return seq
    raise ValueError(f"volumes has no known sequence: {list(volumes)}")


def canonical_images(
    volumes: Mapping[Sequence, Volume], primary: Volume, canonical: Canonical
) -> list[FloatArray]:
    """Every series on the primary's canonical grid (they share the frame of reference)."""
    out = []
    for vol in volumes.values():
        on_grid = vol if vol.same_grid(primary) else resample_like(vol, primary)
        out.append(np.asarray(canonical.to_canonical(np.asarray(on_grid.array)), dtype=np.float32))
    return out


def canonical_footprints(volumes: Mapping[Sequence, Volume], primary: Volume,
                         canonical: Canonical) -> list[npt.NDArray[np.bool_]]:
    """Where each series has image on the primary's canonical grid (:func:`footprint_like`)."""
    return [np.asarray(canonical.to_canonical(footprint_like(vol, primary).array), dtype=bool)
            for vol in volumes.values()]


def study_probabilities(images: list[FloatArray], canonical: Canonical, model: BodyModel,
                        footprints: list[npt.NDArray[np.bool_]] | None = None) -> FloatArray:
    """Class probabilities on the primary's canonical native grid, averaged over sequences.

    With ``footprints`` (one per image), a voxel averages only the sequences
    that have image there: a series with a smaller field of view is padded, and
    the padding is not tissue. Where none has, all are averaged.
    """
    if not images:
        raise ValueError("images must not be empty")
    if footprints is not None and len(footprints) != len(images):
        raise ValueError(f"footprints must have one mask per image ({len(images)}), got {len(footprints)}")
    work = [predict_work(model, image, canonical.spacing) for image in images]
    if footprints is None or all(fp.all() for fp in footprints):
        mean = (np.sum(work, axis=0) / len(images)).astype(np.float32)
        return probabilities_to_native(mean, canonical.shape)
    weights = np.stack(footprints).astype(np.float32)
    weights[:, weights.sum(axis=0) == 0] = 1.0
    total = sum(probabilities_to_native(p, canonical.shape) * w[..., None]
                for p, w in zip(work, weights, strict=True))
    return np.asarray(total / weights.sum(axis=0)[..., None], dtype=np.float32)


def section_heights(
    cand: BodyCandidate,
    mask_heights: Heights,
    images: list[FloatArray],
    canonical: Canonical,
    axis: tuple[float, float] | None,
    refiners: tuple[Network, ...],
    footprints: list[npt.NDArray[np.bool_]] | None = None,
) -> Heights:
    """Heights on the body's mid-sagittal section redrawn by the refiners; its mask's without them.

    The mask's heights are kept, too, when the redrawn section is under
    ``_MIN_SECTION_SHARE`` of the mask's: on the implanted T1+STIR pair a
    lesion-bearing L5 was redrawn at 0.55 of its mask and a grade-2 fracture
    went unmeasured; the sections of the phantoms' and real cases' bodies,
    grade-3 collapses included, keep at least 0.81 of it (evaluate_vertebrae, 402 bodies).
    """
    if not refiners:
        return mask_heights
    s = mask_heights.mid_slice
    if footprints is not None:
        # redrawn on the sequences with image over the whole section, as the bodies were found
        covering = [im for im, fp in zip(images, footprints, strict=True) if fp[s][cand.mask[s]].all()]
        images = covering or images
    rows, cols = np.nonzero(cand.mask[s])
    sp = canonical.spacing
    section = refined_section(refiners, images, sp, s, (rows.mean() * sp[1], cols.mean() * sp[2]))
    area = float(section.mask.sum()) * SECTION_PX**2
    if area < max(_MIN_SECTION_MM2, _MIN_SECTION_SHARE * rows.size * sp[1] * sp[2]):
        return mask_heights
    ha, hm, hp = heights_2d(section.mask, (SECTION_PX, SECTION_PX), axis, section.edge)
    return Heights(ha, hm, hp, s)


def _bottom_gap_mm(body: BodyCandidate, canonical: Canonical) -> float:
    rows = np.nonzero(body.mask.any(axis=(0, 2)))[0]
    return float((canonical.shape[1] - 1 - rows.max()) * canonical.spacing[1])


def _name(chain: list[BodyCandidate], canonical: Canonical) -> Naming:
    return name_chain(
        [c.l5_score for c in chain],
        _bottom_gap_mm(chain[-1], canonical) if chain else 0.0,
        [(c.centroid_mm[1], c.centroid_mm[2]) for c in chain],
    )


def _look_again_for_s1(
    chain: list[BodyCandidate],
    naming: Naming,
    body_prob: FloatArray,
    l5_prob: FloatArray,
    canonical: Canonical,
) -> tuple[list[BodyCandidate], Naming, bool]:
    """The chain with S1 found on a second look when it is missing or a fragment of a body.

    The second look's S1 replaces the first only when it is larger and the bodies
    above keep their names; whatever lay below S1 was not named and is let go.
    """
    if not naming.sacrum_in_view or "L5" not in naming.names:
        return chain, naming, False
    at_l5 = naming.names.index("L5")
    mobile = chain[: at_l5 + 1]
    first = chain[at_l5 + 1] if at_l5 + 1 < len(chain) else None
    typical = float(np.median([c.volume_ml for c in mobile]))
    if len(mobile) < 2 or (first is not None and first.volume_ml >= _SMALL_S1_FRACTION * typical):
        return chain, naming, False
    s1 = sacral_second_look(body_prob, l5_prob, mobile, canonical.spacing)
    if s1 is None or (first is not None and s1.volume_ml <= first.volume_ml):
        return chain, naming, False
    renamed = _name([*mobile, s1], canonical)
    if renamed.names != (*naming.names[: at_l5 + 1], "S1"):
        return chain, naming, False
    return [*mobile, s1], renamed, True


def _look_again_above(
    chain: list[BodyCandidate],
    naming: Naming,
    body_prob: FloatArray,
    l5_prob: FloatArray,
    canonical: Canonical,
) -> tuple[list[BodyCandidate], Naming, bool]:
    """The chain with a body above its top one found on a second look (a collapsed or replaced body).

    Only a whole body is taken (one cut by the image has no height to grade),
    and only when every body below keeps its name.
    """
    if len(chain) < 2 or naming.names[0] is None:
        return chain, naming, False
    top = second_look(body_prob, l5_prob, chain, canonical.spacing, below=False)
    if top is None or touches_fov_edge(top.mask):
        return chain, naming, False
    renamed = _name([top, *chain], canonical)
    if renamed.names[1:] != naming.names or renamed.names[0] is None:
        return chain, naming, False
    return [top, *chain], renamed, True


def touches_fov_edge(mask: npt.NDArray[np.bool_]) -> bool:
    """Whether a canonical body mask is cut by the image: top, bottom, front, back or lateral middle.

    A body whose largest sagittal section lies on the first two or last two
    slices of the series (a narrow series off the midline) may have its
    mid-sagittal plane outside the image. Such a body is not measured.
    """
    rows = np.nonzero(mask.any(axis=(0, 2)))[0]
    cols = np.nonzero(mask.any(axis=(0, 1)))[0]
    area = mask.sum(axis=(1, 2))
    return bool(
        rows.min() <= 1
        or rows.max() >= mask.shape[1] - 2
        or cols.min() <= 1
        or cols.max() >= mask.shape[2] - 2
        or not 2 <= int(np.argmax(area)) < area.size - 2
    )


def _measurable(body: BodyCandidate, h: Heights) -> bool:
    """Heights only from a body that looks like one (not a fragment the network half-found).

    ``h`` are the heights measured (on the refined section). Checked on the
    mask instead, the floor let the refiner's misdrawn section of a normal real
    body through (VB1_02 L4 graded 3 at 55.6 %), so a collapse drawn under 10 mm
    (T10 on the T1+STIR pair) stays unmeasured.
    """
    return (
        body.volume_ml >= _MIN_MEASURABLE_ML
        and body.mean_prob >= _MIN_MEASURABLE_PROB
        and min(h.ha_mm, h.hm_mm, h.hp_mm) >= _MIN_MEASURABLE_HEIGHT_MM
    )


def segment_spine(volumes: Mapping[Sequence, Volume], model: BodyModel) -> SpineSegmentation:
    """Find, segment, name and measure every vertebral body in a sagittal study."""
    if not isinstance(volumes, Mapping) or not volumes:
        raise ValueError("volumes must be a non-empty mapping of Sequence to Volume")
    for seq, vol in volumes.items():
        if not isinstance(vol, Volume):
            raise TypeError(f"volumes[{seq!r}] must be a Volume, got {type(vol).__name__}")
    if not isinstance(model, BodyModel):
        raise TypeError(f"model must be a BodyModel, got {type(model).__name__}")
    whole = volumes[primary_sequence(volumes)]
    # A constant border (a larger matrix filled around the image) is left out: the network
    # took it for bone, and a body cut by the image's edge must count as cut. The box holds the
    # image of every series on the primary's grid, so none of them loses rows.
    box = content_box_of([vol for vol in volumes.values() if vol.same_grid(whole)])
    volumes = {seq: vol.crop(box) if vol.same_grid(whole) else vol for seq, vol in volumes.items()}
    primary = volumes[primary_sequence(volumes)]
    can = canonical_of(primary)
    images = canonical_images(volumes, primary, can)
    footprints = canonical_footprints(volumes, primary, can)
    probs = study_probabilities(images, can, model, footprints)
    body_prob = probs[..., 1] + probs[..., 2]
    chain = split_bodies(body_prob, probs[..., 2], can.spacing)
    notes: list[str] = []
    if len(volumes) > 1:
        notes.append(f"bodies found on {', '.join(sorted(str(s) for s in volumes))} together")
    naming = _name(chain, can)
    chain, naming, looked = _look_again_for_s1(chain, naming, body_prob, probs[..., 2], can)
    if looked:
        notes.append("S1 found only at a lower body probability: its marrow may be replaced")
    chain, naming, looked = _look_again_above(chain, naming, body_prob, probs[..., 2], can)
    if looked:
        notes.append(
            f"{naming.names[0]} found only at a lower body probability: its marrow may be replaced"
            " or the body collapsed"
        )
    notes.extend(naming.notes)
    labels = np.zeros(can.shape, dtype=np.int16)
    outlines = np.zeros(can.shape, dtype=np.int16)
    named: list[tuple[str, BodyCandidate, Heights]] = []
    dropped = 0
    # the local spine axis for measuring comes from the mobile segment only (not the sacrum)
    mobile = [c for c, n in zip(chain, naming.names, strict=True) if n is not None and n != "S1"]
    axes = dict(
        zip(
            [id(c) for c in mobile],
            chain_axes([(c.centroid_mm[1], c.centroid_mm[2]) for c in mobile]),
            strict=True,
        )
    )
    for cand, name in zip(chain, naming.names, strict=True):
        if name is None:
            dropped += 1
            continue
        labels[cand.mask & (labels == 0)] = VERSE_LABELS[name]
        outline = cand.mask if cand.outline is None else cand.outline
        outlines[outline & (outlines == 0)] = VERSE_LABELS[name]
        named.append((name, cand, body_heights(cand.mask, can.spacing, axes.get(id(cand)))))
    if dropped:
        notes.append(f"{dropped} body-like region(s) outside T1-S1 not labelled")
    # S1 is part of the sacrum, and a body cut by the edge of the image has no true height:
    # both are labelled but neither graded nor used as a neighbour's reference
    cut = {n for n, c, _ in named if touches_fov_edge(c.mask)}
    for n in sorted(cut):
        notes.append(f"{n} is cut by the edge of the field of view: not measured")
    # only the bodies measured are redrawn
    heights = {
        n: section_heights(c, h, images, can, axes.get(id(c)), model.refiners, footprints)
        for n, c, h in named
        if n not in cut
    }
    unsure = {n for n, c, _ in named if n not in cut and not _measurable(c, heights[n])}
    for n in sorted(unsure):
        notes.append(f"{n} segmentation too uncertain to measure its heights")
    cut |= unsure
    graded = [n for n, _, _ in named if n not in UNGRADED_LEVELS and n not in cut]
    defs = dict(zip(graded, deformities(graded, [heights[n] for n in graded]), strict=True))
    bodies: list[BodyMeasurement] = []
    for name, cand, mask_h in named:
        centroid_idx = np.array(cand.centroid_mm) / np.array(can.spacing)
        lps = canonical_to_lps(primary, can, centroid_idx)
        d = defs.get(name)
        measured = name not in cut
        h = heights.get(name, mask_h)
        bodies.append(
            BodyMeasurement(
                level=name,
                label=VERSE_LABELS[name],
                centroid_lps=(float(lps[0]), float(lps[1]), float(lps[2])),
                ha_mm=round(h.ha_mm, 2) if measured else None,
                hm_mm=round(h.hm_mm, 2) if measured else None,
                hp_mm=round(h.hp_mm, 2) if measured else None,
                expected_height_mm=None
                if d is None or d.expected_height_mm is None
                else round(d.expected_height_mm, 2),
                height_loss_pct=None
                if d is None or d.height_loss_pct is None
                else round(d.height_loss_pct, 1),
                genant_grade=None if d is None else d.genant_grade,
                volume_ml=round(cand.volume_ml, 2),
            )
        )
    return SpineSegmentation(
        labels=whole.with_array(_embed(can.from_canonical(labels), box, whole.array.shape)),
        bodies=tuple(bodies),
        labelling_certainty=naming.certainty,
        sacrum_in_view=naming.sacrum_in_view,
        notes=tuple(notes),
        outlines=whole.with_array(_embed(can.from_canonical(outlines), box, whole.array.shape)),
    )


def _embed(part: npt.NDArray[np.generic], box: tuple[slice, slice, slice],
           shape: tuple[int, ...]) -> npt.NDArray[np.generic]:
    out = np.zeros(shape, dtype=part.dtype)
    out[box] = part
    return out
