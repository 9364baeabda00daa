"""The stored series the vertebral bodies were drawn on, slice by slice.

The label map of an analysis is on the grid of its primary sagittal series
(:func:`analysis.vertebrae.pipeline.primary_sequence`); the SEG is drawn on
that series and references it, so its frames follow the series' own
instances (single-frame MR) or frames (Enhanced MR).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, time

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, TM

from analysis.vertebrae.pipeline import primary_sequence
from analysis.volume import Sequence, Volume
from node.pipeline.inputs import StudyInputs
from node.study import SeriesFiles, StudyFiles
from node.study.frames import series_frame_headers
from node.study.geometry import stack_geometry


class SeriesNotReferable(ValueError):
    """The series the bodies were drawn on cannot be the Segmentation's source (highdicom takes
    one multi-frame source image): the analysis stands, but no result object can be written."""


@dataclass(frozen=True, eq=False)
class SegmentedSeries:
    """The primary series' headers and where each slice ``k`` of its volume is stored."""

    sequence: Sequence
    series: SeriesFiles
    volume: Volume  # the series' pixels, on the label map's grid
    datasets: tuple[Dataset, ...]  # the source images, in the order the SEG's frames follow
    frame_of_slice: tuple[int, ...]  # slice k of the volume -> 0-based frame in that order

    @property
    def series_instance_uid(self) -> str:
        return self.series.series_instance_uid

    @property
    def reference(self) -> Dataset:
        """A source header for the patient and study modules every result object copies."""
        return self.datasets[0]

    def to_frames(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """A ``[k, row, column]`` mask on the volume's grid, reordered as the source's frames."""
        frames = np.zeros_like(mask)
        frames[list(self.frame_of_slice)] = mask
        return frames


def segmented_series(inputs: StudyInputs, study: StudyFiles, labels: Volume) -> SegmentedSeries:
    """Find the series ``labels`` was drawn on and check that its grid is that of ``labels``."""
    if not isinstance(inputs, StudyInputs):
        raise TypeError(f"inputs must be StudyInputs, got {type(inputs).__name__}")
    if not isinstance(study, StudyFiles):
        raise TypeError(f"study must be StudyFiles, got {type(study).__name__}")
    if study.study_instance_uid != inputs.study_instance_uid:
        raise ValueError(
            f"study: Study Instance UID {study.study_instance_uid} is not the analysed "
            f"study {inputs.study_instance_uid}"
        )
    sequence = primary_sequence(inputs.volumes)
    volume = inputs.volumes[sequence]
    if not volume.same_grid(labels):
        raise ValueError(f"labels: not on the grid of the {sequence} series the bodies were drawn on")
    series_uid = inputs.series_uids[sequence]
    series = next((s for s in study.series if s.series_instance_uid == series_uid), None)
    if series is None:
        raise ValueError(f"study: no files of the {sequence} series {series_uid}")
    _, datasets, frames = series_frame_headers(series.paths, series.headers)
    geometry = stack_geometry(frames)
    if geometry.shape != labels.array.shape:
        raise ValueError(
            f"study: the {sequence} series' stack {geometry.shape} is not the label grid {labels.array.shape}"
        )
    multi = [f for f in frames if f.frame_index is not None]
    if multi:
        if len(datasets) != 1:
            raise SeriesNotReferable(
                f"the {sequence} series the vertebral bodies were drawn on is stored as {len(datasets)} "
                "multi-frame objects, and a Segmentation can reference only one: no SR, SEG or key "
                "image was written")
        frame_of_slice = tuple(int(frames[n].frame_index or 0) for n in geometry.order)
        ordered: tuple[Dataset, ...] = (datasets[0],)
    else:
        by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
        ordered = tuple(by_uid[frames[n].sop_instance_uid] for n in geometry.order)
        frame_of_slice = tuple(range(len(ordered)))
    return SegmentedSeries(sequence, series, volume, tuple(_with_type2(ds) for ds in ordered), frame_of_slice)


# Patient and General Study attributes of type 2 that the result objects copy: some
# senders leave them out rather than empty, and a copy then fails.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                 "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")
_DATE_TIME: dict[str, Callable[[str], object]] = {"PatientBirthDate": DA, "StudyDate": DA, "StudyTime": TM}
_SEXES = ("M", "F", "O", "")  # PS3.3 C.7.1.1 Patient's Sex, enumerated values
# Copied as sent, whatever their form: a PACS files a result with its study by them, and an
# Orthanc given another Patient ID opens a second study of the same UID under another patient.
_FILED_BY = ("PatientID", "AccessionNumber")


def _with_type2(ds: Dataset) -> Dataset:
    """``ds``, or a shallow copy of it with the copied type-2 attributes it lacks, or holds in a
    form its VR or multiplicity does not allow, present and empty.

    A sender's birth date written 1963-01-01, two patient names where one is allowed, or a sex
    written "male" was stored (a bad demographic value must not lose a study), and then every
    analysis of the study failed writing its results: highdicom refuses them.
    """
    empty = [name for name in _TYPE2_COPIED if name not in ds]
    # each allows one value (PS3.3 C.7.1.1, C.7.2.1)
    empty += [name for name in _TYPE2_COPIED
              if name in ds and name not in _FILED_BY and ds[name].VM > 1]
    if "PatientSex" in ds and ds.PatientSex not in _SEXES:
        empty.append("PatientSex")
    empty += [name for name, vr in _DATE_TIME.items()
              if name in ds and name not in empty and not _valid(vr, ds.get(name))]
    if not empty:
        return ds
    filled = copy.copy(ds)
    for name in empty:
        setattr(filled, name, "")
    return filled


def _valid(vr: Callable[[str], object], value: object) -> bool:
    if value is None or isinstance(value, date | time) or str(value) == "":
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warning quotes the value: a patient's data
        try:
            vr(str(value))
        except ValueError:
            return False
    return True
