"""Issue 2's acceptance, end to end: a real node, DCMTK as the PACS, a 100-instance lumbar study.

echoscu and storescu succeed; the database then holds the association, the
study, its series, the 100 instances and one analysis job that ran after the
quiet period, with the analysis result it recorded. Runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from analysis.volume import Sequence
from node.db.models import AnalysisResult, Association, Instance, Job, JobStatus, Series, Study, StudyStatus
from phantom.implants import ImplantSpec, LesionSpec
from phantom.render import SagittalGrid
from phantom.specs import LesionKind
from phantom.study import build_phantom
from phantom.writer import StudyIdentity, write_study
from tests.helpers.node import running_node
from tests.helpers.senders import echoscu, storescu
from tests.queue.helpers import wait_until

SEQUENCES = (Sequence.T1, Sequence.T2, Sequence.STIR, Sequence.T1C)


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyIdentity, list[Path]]:
    folder = tmp_path_factory.mktemp("study")
    phantom = build_phantom(
        ImplantSpec(lesions=(LesionSpec(label=22, kind=LesionKind.FOCAL),)),
        np.random.default_rng(42),
        sequences=SEQUENCES,
        grid=SagittalGrid(n_slices=25),
    )
    identity = StudyIdentity.synthetic(42)
    return identity, write_study(identity, phantom.series, folder)


def test_hundred_instance_study_is_stored_and_analysed_once(
    database_url: str, tmp_path: Path, study_files: tuple[StudyIdentity, list[Path]]
) -> None:
    identity, files = study_files
    assert len(files) == 100
    sections: dict[str, dict[str, Any]] = {
        "study": {"quiet_period": 2, "completion_poll_interval": 0.2},
        "queue": {"workers": 1, "poll_interval": 0.2},
        "storage": {"min_free_bytes": 0, "results": str(tmp_path / "results")},
    }
    with running_node(tmp_path, database_url, sections) as node:
        echo = echoscu(node)
        assert echo.returncode == 0, echo.stderr
        sent = storescu(node, files)
        assert sent.returncode == 0, sent.stderr

        with node.engine() as engine:

            def job_finished() -> bool:
                with engine.connect() as conn:
                    return bool(
                        conn.scalar(
                            select(func.count(Job.id)).where(
                                Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED])
                            )
                        )
                    )

            wait_until(job_finished, "the analysis job", timeout=300)
            with engine.connect() as conn:
                associations = conn.execute(
                    select(
                        Association.calling_ae, Association.result, Association.instances_received
                    ).order_by(Association.id)
                ).all()
                study = conn.execute(select(Study.study_instance_uid, Study.status)).one()
                series = conn.execute(select(Series.plane, Series.sequence)).all()
                instances = conn.scalar(select(func.count(Instance.id)))
                jobs = conn.execute(select(Job.kind, Job.status, Job.attempts, Job.last_error)).all()
                result = conn.execute(
                    select(AnalysisResult.outcome, AnalysisResult.findings, AnalysisResult.job_id)
                ).one()

    assert [(a, r) for a, r, _ in associations] == [("ECHOSCU", "released"), ("STORESCU", "released")]
    assert associations[1][2] == 100
    assert study == (identity.study_uid, StudyStatus.ANALYSED)
    assert sorted(series) == sorted(("sagittal", str(s)) for s in SEQUENCES)
    assert instances == 100
    assert jobs == [("analyze_study", JobStatus.SUCCEEDED, 1, None)]
    outcome, findings, job_id = result
    assert outcome == "analysed"
    assert findings["study_instance_uid"] == identity.study_uid
    written = json.loads(
        (tmp_path / "results" / identity.study_uid / str(job_id) / "findings.json").read_text()
    )
    assert written == findings
    assert (tmp_path / "results" / identity.study_uid / str(job_id) / "vertebrae.nii.gz").is_file()
