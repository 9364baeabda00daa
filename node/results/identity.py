"""Who made the result objects, and the UIDs they carry.

Every UID of one analysis derives from one seed (the study, the analysis or
job that produced the results, the algorithm version): writing the results
of the same job again gives the same objects, so a job re-run after a lost
lease sends the same instances instead of duplicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

PRODUCT = "Lumbar Sentinel"
MANUFACTURER = "Lumbar Sentinel project"
DEVICE_SERIAL_NUMBER = "none"  # Type 1 in the Enhanced General Equipment module; software has none

SEG_SERIES_NUMBER = 9001
SR_SERIES_NUMBER = 9002
KEY_IMAGE_SERIES_NUMBER = 9003
_UTF8 = "ISO_IR 192"
_OFFSET = re.compile(r"([+-])(\d\d)(\d\d)")
_WRITABLE_CHARACTER_SETS = frozenset(value.value for value in hd.enum.SpecificCharacterSetValues)


def character_set(source: Dataset) -> str | list[str] | None:
    """The Specific Character Set to write: the source's, or UTF-8 where highdicom cannot take it.

    highdicom copies the source's and refuses some legal values (an empty one, the
    Japanese "\\ISO 2022 IR 87" whose first value is empty, ISO 2022 IR 149), which
    left such a study without results. pydicom has decoded the values already, so
    UTF-8 holds them all.
    """
    value = source.get("SpecificCharacterSet")
    if value is None:
        return None
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    if values and all(v in _WRITABLE_CHARACTER_SETS for v in values):
        return value if isinstance(value, str) else values
    return _UTF8


@dataclass(frozen=True)
class ResultIdentity:
    """The seed of every UID of one analysis's result objects, its software and its time."""

    study_instance_uid: str
    analysis_key: str  # the analysis or job that produced the results
    algorithm_version: str
    created: datetime  # local wall time, as written (see :func:`local_time`)
    timezone_offset: str | None = None  # Timezone Offset From UTC to write, if the source has one

    def __post_init__(self) -> None:
        for name in ("study_instance_uid", "analysis_key", "algorithm_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.created, datetime):
            raise TypeError(f"created must be a datetime, got {type(self.created).__name__}")

    def uid(self, *parts: str) -> UID:
        """The UID named by ``parts`` (e.g. ``"sr", "instance"``) for this analysis."""
        return generate_uid(
            entropy_srcs=[
                "lumbar-sentinel results",
                self.study_instance_uid,
                self.analysis_key,
                self.algorithm_version,
                *parts,
            ]
        )

    @property
    def device_uid(self) -> UID:
        """The device observer: the product at this version, the same for every study."""
        return generate_uid(entropy_srcs=["lumbar-sentinel device", PRODUCT, self.algorithm_version])

    @property
    def device_name(self) -> str:
        return f"{PRODUCT} {self.algorithm_version}"


def local_time(created: datetime, source: Dataset) -> tuple[datetime, str | None]:
    """The analysis time ``created`` (naive: UTC) as the result objects write it, and the offset to write.

    DICOM dates and times are local time, and Timezone Offset From UTC applies to
    every one of them in an instance, the Patient and Study modules copied from the
    source included. So the results take the source's offset when it has one (and
    write it), else the node's local time zone (``TZ``), as the source's own times
    are taken to be, and write no offset.
    """
    instant = created if created.tzinfo is not None else created.replace(tzinfo=UTC)
    offset = str(source.get("TimezoneOffsetFromUTC", "") or "").strip()
    match = _OFFSET.fullmatch(offset)
    if match is None:
        return instant.astimezone().replace(tzinfo=None), None
    sign = -1 if match.group(1) == "-" else 1
    zone = timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    return instant.astimezone(zone).replace(tzinfo=None), offset


def stamp_times(ds: Dataset, identity: ResultIdentity) -> None:
    """Put the analysis time where highdicom stamps "now", so that re-runs write the same bytes."""
    created = identity.created
    if identity.timezone_offset is not None:
        ds.TimezoneOffsetFromUTC = identity.timezone_offset
    ds.InstanceCreationDate = created.strftime("%Y%m%d")
    ds.InstanceCreationTime = created.strftime("%H%M%S")
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = created.strftime("%Y%m%d%H%M%S")
