"""A body's mid-sagittal section redrawn at native resolution, for its heights.

The body network works on a 2 mm grid and was trained on labels put on that
grid, so its masks round a collapse toward a normal body: on the 30 evaluation
phantoms its masks read 3-4 points of height loss less than the truth masks,
and the Genant grades came out right for 15 of 25 fractures (20 of 25 on the
truth masks). A second network (the same U-Net, its own weights, trained by
``scripts/train_refiner.py``) redraws one body on one sagittal section: a
64 mm square centred on the body, ``SECTION_SIZE`` pixels of ``SECTION_PX`` mm
(the native in-plane size of a clinical series), the section and its neighbours
as channels. Its classes: background, this body, any other body. Only the
heights are measured on it; the 3-D masks stay the body network's. It was
trained on soft targets (the truth mask interpolated onto its grid), so the 0.5
level of its probability is the body's edge between pixels: heights are
measured on that probability, not on the mask it thresholds to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from analysis.vertebrae.features import FloatArray
from analysis.vertebrae.inference import Network, neighbour_step
from analysis.vertebrae.segment import largest_component

BoolArray = npt.NDArray[np.bool_]

SECTION_PX = 0.8  # mm per pixel of the redrawn section
SECTION_SIZE = 80  # pixels: a 64 mm square holds any lumbar body with its discs
REFINER_CHANNELS = (16, 32, 64, 128)
_NORM_HALF_MM = 10.0  # intensities are scaled on the body's central 20 mm


def section_grid(centre_mm: tuple[float, float], spacing: tuple[float, float, float]) -> list[FloatArray]:
    """Canonical (SI, AP) voxel coordinates of the section's pixels, centred on ``centre_mm``."""
    offsets = (np.arange(SECTION_SIZE) - SECTION_SIZE / 2 + 0.5) * SECTION_PX
    rows = (centre_mm[0] + offsets) / spacing[1]
    cols = (centre_mm[1] + offsets) / spacing[2]
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return [rr.astype(np.float32), cc.astype(np.float32)]


def section_input(
    image: npt.NDArray[np.generic],
    spacing: tuple[float, float, float],
    slice_index: int,
    centre_mm: tuple[float, float],
) -> FloatArray:
    """(3, SIZE, SIZE): the section and its neighbour slices of a canonical image, intensity-normalised."""
    if image.ndim != 3 or not 0 <= slice_index < image.shape[0]:
        raise ValueError(f"slice_index {slice_index} outside a volume of shape {image.shape}")
    step = neighbour_step(spacing[0])
    grid = section_grid(centre_mm, spacing)
    last = image.shape[0] - 1
    out = np.stack(
        [
            ndimage.map_coordinates(np.asarray(image[k], dtype=np.float32), grid, order=1, mode="nearest")
            for k in (slice_index, max(slice_index - step, 0), min(slice_index + step, last))
        ]
    )
    q = round(_NORM_HALF_MM / SECTION_PX)
    mid = SECTION_SIZE // 2
    core = out[:, mid - q : mid + q, mid - q : mid + q]
    p10, p50, p90 = np.percentile(core, [10, 50, 90])
    return ((out - p50) / max(float(p90 - p10), 1e-6)).astype(np.float32)


def section_target(
    labels: npt.NDArray[np.integer],
    spacing: tuple[float, float, float],
    slice_index: int,
    centre_mm: tuple[float, float],
    label: int,
) -> FloatArray:
    """(3, SIZE, SIZE) soft classes (background, this body, other bodies) from a truth label map."""
    grid = section_grid(centre_mm, spacing)
    section = labels[slice_index]
    this = ndimage.map_coordinates((section == label).astype(np.float32), grid, order=1, mode="constant")
    other = ndimage.map_coordinates(
        ((section > 0) & (section != label)).astype(np.float32), grid, order=1, mode="constant"
    )
    return np.stack([np.clip(1.0 - this - other, 0.0, 1.0), this, other]).astype(np.float32)


@dataclass(frozen=True)
class RefinedSection:
    """One body redrawn on one section, (SIZE, SIZE) at ``SECTION_PX`` mm.

    ``mask`` is the body, holes filled. ``edge`` is the refiners' probability
    of this body, shaped for measuring: 1 in the filled holes, under 0.5 beyond
    the mask (another body's pixels included) and 0 more than two pixels out,
    so its 0.5 level is the mask's outline placed between pixels.
    """

    mask: BoolArray
    edge: FloatArray


def refined_section(
    refiners: Sequence[Network],
    images: Sequence[npt.NDArray[np.generic]],
    spacing: tuple[float, float, float],
    slice_index: int,
    centre_mm: tuple[float, float],
) -> RefinedSection:
    """The body at ``centre_mm`` on one canonical section, redrawn by the refiners.

    The refiners' probabilities are averaged over every network and every
    image (the study's sequences on one grid); the body is the component
    under the centre (or the largest), holes filled.
    """
    if not refiners or not images:
        raise ValueError("refiners and images must not be empty")
    x = np.stack([section_input(im, spacing, slice_index, centre_mm) for im in images])
    prob = np.stack([net.probabilities(x)[:, 1].mean(axis=0) for net in refiners]).mean(axis=0)
    p = prob.astype(np.float64)
    inside = p >= 0.5
    pieces, _ = ndimage.label(inside)
    under_centre = int(pieces[SECTION_SIZE // 2, SECTION_SIZE // 2])
    body = pieces == under_centre if under_centre else largest_component(inside)
    mask = np.asarray(ndimage.binary_fill_holes(body), dtype=bool)
    near = ndimage.binary_dilation(mask, iterations=2)
    edge = np.where(mask, np.where(body, p, 1.0), np.where(near, np.minimum(p, 0.499), 0.0))
    return RefinedSection(mask, edge)
