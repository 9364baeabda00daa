"""The one place in :mod:`analysis` that touches SimpleITK.

Conversions between :class:`~analysis.volume.Volume` and ``SimpleITK.Image``
and resampling of one volume onto another's grid (the sequences of a study share
a frame of reference but not always a grid). No file I/O here: callers read and
write files themselves.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from analysis.volume import Volume


def volume_from_image(image: sitk.Image) -> Volume:
    """A :class:`Volume` holding a copy of ``image``'s voxels and geometry."""
    if not isinstance(image, sitk.Image):
        raise TypeError(f"image must be a SimpleITK.Image, got {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("image must be a scalar 3-D image")
    return Volume(
        array=sitk.GetArrayFromImage(image),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
    )


def image_from_volume(volume: Volume) -> sitk.Image:
    """A ``SimpleITK.Image`` with ``volume``'s voxels and geometry."""
    if not isinstance(volume, Volume):
        raise TypeError(f"volume must be a Volume, got {type(volume).__name__}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def resample_like(volume: Volume, reference: Volume, *, labels: bool = False) -> Volume:
    """``volume`` resampled onto ``reference``'s grid (linear, or nearest for label maps)."""
    if not isinstance(reference, Volume):
        raise TypeError(f"reference must be a Volume, got {type(reference).__name__}")
    moving = image_from_volume(volume)
    if not labels:
        moving = sitk.Cast(moving, sitk.sitkFloat32)
    resampled = sitk.Resample(
        moving,
        image_from_volume(reference.with_array(np.zeros(reference.array.shape, dtype=np.uint8))),
        sitk.Transform(),
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        0.0,
        moving.GetPixelID(),
    )
    return volume_from_image(resampled)


def footprint_like(volume: Volume, reference: Volume) -> Volume:
    """Where on ``reference``'s grid ``volume`` has image (uint8, 1 inside), not padding.

    Outside its extent, and in a constant border (:meth:`Volume.content_box`),
    :func:`resample_like` gives values that are not tissue; a series with a
    smaller field of view than the reference read there as dark marrow.
    """
    box = volume.content_box()
    if volume.same_grid(reference):  # the usual case: no resampling needed
        mask = np.zeros(volume.array.shape, dtype=np.uint8)
        mask[box] = 1
        return reference.with_array(mask)
    inside = volume.crop(box)
    ones = inside.with_array(np.ones(inside.array.shape, dtype=np.uint8))
    return resample_like(ones, reference, labels=True)


def take_every_nth_slice(volume: Volume, step: int, axis: int = 0) -> Volume:
    """A thicker-slice series: every ``step``-th slice along array ``axis`` (0 = k).

    Used to turn the 1 mm research volumes into realistic 3-4 mm clinical series
    while keeping the LPS geometry exact.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    index_axis = 2 - axis
    sl: list[slice] = [slice(None)] * 3
    sl[axis] = slice(None, None, step)
    spacing = list(volume.spacing)
    spacing[index_axis] *= step
    return Volume(
        array=np.ascontiguousarray(volume.array[tuple(sl)]),
        spacing=(spacing[0], spacing[1], spacing[2]),
        origin=volume.origin,
        direction=volume.direction,
    )


def take_every_nth_sagittal(volume: Volume, step: int) -> Volume:
    """Every ``step``-th sagittal slice, along whichever array axis runs left-right."""
    lr_axis = 2 - int(np.argmax(np.abs(volume.direction_matrix[0, :])))
    return take_every_nth_slice(volume, step, axis=lr_axis)
