"""Issue 3: a phantom study written, stored by a real node and read back keeps its geometry.

The body positions are checked through patient coordinates: every voxel of a
vertebral body in the phantom's own label map is mapped to LPS with the
generator's geometry, then into the read-back volume with the geometry the
node's files give; it must land on a grid point (within a voxel) holding the
very pixel value that was written there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from analysis.volume import Sequence
from node.db.models import Instance, Series, Study
from node.study import group_dicom_folder, read_series, select_series
from phantom.implants import FractureSpec, ImplantSpec, LesionSpec
from phantom.specs import FracturePattern, LesionKind
from phantom.study import PhantomStudy, build_phantom
from phantom.writer import StudyIdentity, write_study
from tests.helpers.node import NodeProcess, running_node
from tests.helpers.senders import storescu

# storescu proposes only uncompressed syntaxes unless told which one the files carry.
STORESCU_OPTION = {"none": "-xe", "j2k": "-xv", "rle": "-xr", "jpegls": "-xt"}
VARIANTS = [
    pytest.param(False, "none", id="single-frame-uncompressed"),
    pytest.param(False, "j2k", id="single-frame-jpeg2000"),
    pytest.param(False, "rle", id="single-frame-rle"),
    pytest.param(True, "none", id="enhanced-uncompressed"),
    pytest.param(True, "jpegls", id="enhanced-jpegls"),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("roundtrip-node")
    with running_node(workdir, f"sqlite:///{workdir / 'node.db'}") as node:
        yield node


def _phantom(seed: int) -> PhantomStudy:
    spec = ImplantSpec(
        lesions=(LesionSpec(label=22, kind=LesionKind.FOCAL),),
        fractures=(FractureSpec(label=20, grade=2, pattern=FracturePattern.BENIGN),),
    )
    return build_phantom(spec, np.random.default_rng(seed))


@pytest.mark.parametrize(("enhanced", "compression"), VARIANTS)
def test_bodies_keep_their_physical_position(
    node: NodeProcess, tmp_path: Path, enhanced: bool, compression: str
) -> None:
    seed = 1000 + VARIANTS.index(next(v for v in VARIANTS if v.values == (enhanced, compression)))
    phantom = _phantom(seed)
    identity = StudyIdentity.synthetic(seed)
    written = write_study(identity, phantom.series, tmp_path / "dicom", enhanced, compression)

    sent = storescu(node, written, "-R", STORESCU_OPTION[compression])
    assert sent.returncode == 0, sent.stderr

    with node.engine() as engine, engine.connect() as conn:
        stored = conn.scalar(
            select(func.count(Instance.id))
            .join(Series)
            .join(Study)
            .where(Study.study_instance_uid == identity.study_uid)
        )
    assert stored == len(written)

    folder = group_dicom_folder(node.storage_root / identity.study_uid)
    study = folder.study(identity.study_uid)
    selection = select_series([s.headers for s in study.series])
    assert selection.analysable, selection.problems
    for original in phantom.series:
        choice = selection.choice(original.sequence)
        assert choice is not None, f"{original.sequence} not selected"
        files = next(s for s in study.series if s.series_instance_uid == choice.series.series_instance_uid)
        volume = read_series(files.paths, headers=files.headers).volume
        _assert_bodies_in_place(phantom, original.sequence, volume)


def _assert_bodies_in_place(phantom: PhantomStudy, sequence: Sequence, volume: object) -> None:
    from analysis.volume import Volume

    assert isinstance(volume, Volume)
    labels = phantom.labels
    pixels = next(s for s in phantom.series if s.sequence == sequence).pixels
    voxel_mm = float(np.max(volume.spacing))
    bodies = [int(v) for v in np.unique(labels.array) if v > 0]
    assert len(bodies) >= 6
    for label in bodies:
        kji = np.argwhere(labels.array == label)
        lps = labels.index_to_lps(kji[:, ::-1].astype(float))
        ijk = volume.lps_to_index(lps)
        grid = np.rint(ijk)
        assert np.abs(ijk - grid).max() < 0.05, f"body {label} falls between the read-back voxels"
        i, j, k = grid.astype(int).T
        assert np.array_equal(volume.array[k, j, i], pixels[kji[:, 0], kji[:, 1], kji[:, 2]]), label
        centroid_truth = lps.mean(axis=0)
        centroid_back = volume.index_to_lps(grid).mean(axis=0)
        assert np.linalg.norm(centroid_truth - centroid_back) < voxel_mm
