"""backfill findings rows: the summary and level rows of analyses recorded before 0003

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

0003 created ``result_summaries`` and ``level_findings``, filled since from
each new analysis; an analysis a node recorded before had only its findings
JSON, so the views and the ``results`` and ``studies`` commands left it out.
This fills their rows from that JSON, as the node does for a new one. A
result whose JSON lacks the study summary or a level's signs is left as it is
(nothing is made up). The names are frozen here, not imported, so that later
changes to the models do not change what this migration did.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SUMMARY = ("suspicious_for_malignancy", "multiple_lesions", "canal_compromise", "suspicious_level_count",
           "impression")
SIGNS = ("marrow_infiltration", "cortical_destruction", "soft_tissue_extension", "compression_fracture",
         "pathologic_fracture_pattern", "suspicious_for_malignancy")
MEASURES = ("genant_grade", "height_loss_pct", "ha_mm", "hm_mm", "hp_mm", "lesion_fraction_pct",
            "t1_marrow_disc_ratio")

results = sa.table("analysis_results", sa.column("id", sa.Integer), sa.column("outcome", sa.String),
                   sa.column("findings", sa.JSON))
summaries = sa.table("result_summaries", sa.column("analysis_result_id", sa.Integer),
                     *(sa.column(name) for name in SUMMARY))
levels = sa.table("level_findings", sa.column("analysis_result_id", sa.Integer), sa.column("level"),
                  *(sa.column(name) for name in (*SIGNS, *MEASURES)))


def _rows(result_id: int, findings: object) -> tuple[dict[str, object], list[dict[str, object]]] | None:
    if not isinstance(findings, dict):
        return None
    study, found = findings.get("study"), findings.get("levels")
    if not isinstance(study, dict) or not isinstance(found, list) or any(k not in study for k in SUMMARY):
        return None
    if not all(isinstance(level, dict) and all(k in level for k in ("level", *SIGNS)) for level in found):
        return None
    summary = {"analysis_result_id": result_id, **{k: study[k] for k in SUMMARY}}
    summary["suspicious_level_count"] = int(str(summary["suspicious_level_count"]))
    rows = [{"analysis_result_id": result_id, "level": level["level"], **{k: level[k] for k in SIGNS},
             **{k: level.get(k) for k in MEASURES}} for level in found]
    return summary, rows


def upgrade() -> None:
    bind = op.get_bind()
    recorded = sa.select(summaries.c.analysis_result_id).where(summaries.c.analysis_result_id == results.c.id)
    pending = bind.execute(sa.select(results.c.id, results.c.findings)
                           .where(results.c.outcome == "analysed", ~sa.exists(recorded))
                           .order_by(results.c.id)).all()
    for result_id, findings in pending:
        made = _rows(result_id, findings)
        if made is None:
            continue
        summary, rows = made
        bind.execute(summaries.insert().values(**summary))
        if rows:
            bind.execute(levels.insert(), rows)


def downgrade() -> None:
    """The rows stay: from 0003 on they are the node's own record of those analyses."""
