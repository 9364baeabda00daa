"""results delivery: result objects, findings as rows, the delivery outbox, audit views

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

The views are what administrators query (docs/audit.md); they use only SQL
that SQLite and PostgreSQL share, except "a week ago", written per dialect.
"""

import sqlalchemy as sa
from alembic import op

import node.db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _week_ago() -> str:
    # Timestamps are text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) on SQLite, timestamptz on PostgreSQL.
    if op.get_bind().dialect.name == "sqlite":
        return "datetime('now', '-7 days')"
    return "now() - interval '7 days'"


CURRENT_ANALYSED = "ar.outcome = 'analysed' AND ar.superseded_by_id IS NULL"


def _count(table: str, where: str) -> str:
    return f"(SELECT COUNT(*) FROM {table} WHERE {where})"


def _views() -> dict[str, str]:
    deliveries_of_ar = "d.analysis_result_id = ar.id"
    return {
        "v_current_results": f"""
SELECT s.study_instance_uid, s.id AS study_id, ar.id AS analysis_result_id,
       ar.created_at AS analysed_at, ar.algorithm_version,
       rs.suspicious_for_malignancy, rs.suspicious_level_count, rs.multiple_lesions,
       rs.canal_compromise, rs.impression,
       {_count("deliveries d", deliveries_of_ar)} AS deliveries_total,
       {_count("deliveries d", deliveries_of_ar + " AND d.status = 'delivered'")} AS deliveries_delivered,
       {_count("deliveries d", deliveries_of_ar + " AND d.status = 'dead'")} AS deliveries_dead
FROM analysis_results ar
JOIN studies s ON s.id = ar.study_id
LEFT JOIN result_summaries rs ON rs.analysis_result_id = ar.id
WHERE {CURRENT_ANALYSED}""",
        "v_suspicious_studies_this_week": f"""
SELECT study_instance_uid, analysis_result_id, analysed_at, algorithm_version,
       suspicious_level_count, multiple_lesions, canal_compromise, impression,
       deliveries_total, deliveries_delivered, deliveries_dead
FROM v_current_results
WHERE suspicious_for_malignancy = 'present' AND analysed_at >= {_week_ago()}""",
        "v_failed_deliveries": f"""
SELECT d.id AS delivery_id, s.study_instance_uid, d.analysis_result_id, d.destination,
       d.called_ae, d.host, d.port, d.attempts, d.last_error, d.created_at,
       d.updated_at AS failed_at,
       {_count("delivery_items i", "i.delivery_id = d.id AND i.acknowledged_at IS NULL")}
           AS objects_unacknowledged
FROM deliveries d
JOIN studies s ON s.id = d.study_id
WHERE d.status = 'dead'""",
        "v_studies_not_analysed": f"""
SELECT s.study_instance_uid, s.status, s.first_received_at, s.last_received_at, s.completed_at,
       {_count("jobs j", "j.study_id = s.id AND j.kind = 'analyze_study' AND j.status IN ('queued', 'running')")}
           AS analysis_jobs_pending,
       {_count("jobs j", "j.study_id = s.id AND j.kind = 'analyze_study' AND j.status = 'failed'")}
           AS analysis_jobs_failed
FROM studies s
WHERE NOT EXISTS (SELECT 1 FROM analysis_results ar WHERE ar.study_id = s.id)""",
        "v_studies_not_delivered": f"""
SELECT s.study_instance_uid, ar.id AS analysis_result_id, ar.created_at AS analysed_at,
       {_count("result_objects o", "o.analysis_result_id = ar.id")} AS result_objects,
       {_count("deliveries d", deliveries_of_ar)} AS deliveries_total,
       {_count("deliveries d", deliveries_of_ar + " AND d.status IN ('queued', 'sending')")}
           AS deliveries_pending,
       {_count("deliveries d", deliveries_of_ar + " AND d.status = 'dead'")} AS deliveries_dead
FROM analysis_results ar
JOIN studies s ON s.id = ar.study_id
WHERE {CURRENT_ANALYSED}
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE {deliveries_of_ar} AND d.status = 'delivered')""",
        "v_study_timings": """
SELECT s.study_instance_uid, s.status, s.first_received_at AS received_at, s.last_received_at,
       s.completed_at,
       (SELECT MAX(ar.created_at) FROM analysis_results ar WHERE ar.study_id = s.id
            AND ar.outcome = 'analysed') AS analysed_at,
       (SELECT MAX(d.delivered_at) FROM deliveries d WHERE d.study_id = s.id) AS delivered_at,
       (SELECT MAX(r.at) FROM retention_deletions r WHERE r.study_id = s.id) AS images_deleted_at
FROM studies s""",
        "v_study_history": """
SELECT s.study_instance_uid, s.first_received_at AS at, 'received' AS stage,
       'first instance received' AS detail
FROM studies s
UNION ALL
SELECT DISTINCT s.study_instance_uid, a.started_at, 'association',
       a.calling_ae || ' -> ' || a.called_ae || ' from ' || a.peer_address || ': ' || a.result
           || ', ' || CAST(a.instances_received AS TEXT) || ' instance(s) in total'
FROM associations a
JOIN instances i ON i.association_id = a.id
JOIN series se ON se.id = i.series_id
JOIN studies s ON s.id = se.study_id
UNION ALL
SELECT s.study_instance_uid, MIN(i.received_at), 'series',
       se.series_instance_uid || ' ' || COALESCE(se.modality, '?') || ' ' || COALESCE(se.plane, '?')
           || '/' || COALESCE(se.sequence, '?') || ', ' || CAST(COUNT(i.id) AS TEXT) || ' instance(s)'
FROM series se
JOIN studies s ON s.id = se.study_id
JOIN instances i ON i.series_id = se.id
GROUP BY s.study_instance_uid, se.series_instance_uid, se.modality, se.plane, se.sequence
UNION ALL
SELECT s.study_instance_uid, s.completed_at, 'complete', 'quiet period over'
FROM studies s WHERE s.completed_at IS NOT NULL
UNION ALL
SELECT s.study_instance_uid, je.at, 'job ' || j.kind || ' ' || je.event,
       'job ' || CAST(j.id AS TEXT) || COALESCE(': ' || je.detail, '')
FROM job_events je
JOIN jobs j ON j.id = je.job_id
JOIN studies s ON s.id = j.study_id
UNION ALL
SELECT s.study_instance_uid, ar.created_at, 'analysis ' || ar.outcome,
       'result ' || CAST(ar.id AS TEXT) || ', algorithm ' || ar.algorithm_version
           || COALESCE(': ' || ar.reason, '')
           || COALESCE(', superseded by result ' || CAST(ar.superseded_by_id AS TEXT), '')
FROM analysis_results ar
JOIN studies s ON s.id = ar.study_id
UNION ALL
SELECT s.study_instance_uid, da.finished_at, 'delivery attempt',
       da.destination || ' attempt ' || CAST(da.attempt AS TEXT) || ': ' || da.outcome
           || COALESCE(' - ' || da.error, '')
FROM delivery_attempts da
JOIN deliveries d ON d.id = da.delivery_id
JOIN studies s ON s.id = d.study_id
UNION ALL
SELECT s.study_instance_uid, e.at, e.stage, e.detail
FROM study_events e
JOIN studies s ON s.id = e.study_id""",
    }


def upgrade() -> None:
    op.create_table(
        "destination_breakers",
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("open_until", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("probe_owner", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("destination", name=op.f("pk_destination_breakers")),
    )
    op.create_table(
        "retention_deletions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("files_deleted", sa.Integer(), nullable=False),
        sa.Column("bytes_deleted", sa.BigInteger(), nullable=False),
        sa.Column("files_missing", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_retention_deletions_study_id_studies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_deletions")),
    )
    with op.batch_alter_table("retention_deletions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retention_deletions_study_id"), ["study_id"], unique=False)

    op.create_table(
        "study_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_study_events_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_events")),
    )
    with op.batch_alter_table("study_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_study_events_study_id"), ["study_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_result_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("called_ae", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("return_to_ae", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("next_attempt_at", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_result_id"],
            ["analysis_results.id"],
            name=op.f("fk_deliveries_analysis_result_id_analysis_results"),
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_deliveries_job_id_jobs")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_deliveries_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "analysis_result_id", "destination", name=op.f("uq_deliveries_analysis_result_id")
        ),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_analysis_result_id"), ["analysis_result_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deliveries_destination"), ["destination"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_deliveries_study_id"), ["study_id"], unique=False)

    op.create_table(
        "level_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_result_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("marrow_infiltration", sa.String(length=16), nullable=False),
        sa.Column("cortical_destruction", sa.String(length=16), nullable=False),
        sa.Column("soft_tissue_extension", sa.String(length=16), nullable=False),
        sa.Column("compression_fracture", sa.String(length=16), nullable=False),
        sa.Column("pathologic_fracture_pattern", sa.String(length=16), nullable=False),
        sa.Column("suspicious_for_malignancy", sa.String(length=16), nullable=False),
        sa.Column("genant_grade", sa.Integer(), nullable=True),
        sa.Column("height_loss_pct", sa.Float(), nullable=True),
        sa.Column("ha_mm", sa.Float(), nullable=True),
        sa.Column("hm_mm", sa.Float(), nullable=True),
        sa.Column("hp_mm", sa.Float(), nullable=True),
        sa.Column("lesion_fraction_pct", sa.Float(), nullable=True),
        sa.Column("t1_marrow_disc_ratio", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_result_id"],
            ["analysis_results.id"],
            name=op.f("fk_level_findings_analysis_result_id_analysis_results"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_level_findings")),
        sa.UniqueConstraint("analysis_result_id", "level", name=op.f("uq_level_findings_analysis_result_id")),
    )
    with op.batch_alter_table("level_findings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_level_findings_analysis_result_id"), ["analysis_result_id"], unique=False
        )

    op.create_table(
        "result_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_result_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_result_id"],
            ["analysis_results.id"],
            name=op.f("fk_result_objects_analysis_result_id_analysis_results"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_objects")),
        sa.UniqueConstraint(
            "analysis_result_id", "sop_instance_uid", name=op.f("uq_result_objects_analysis_result_id")
        ),
    )
    with op.batch_alter_table("result_objects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_objects_analysis_result_id"), ["analysis_result_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_result_objects_sop_instance_uid"), ["sop_instance_uid"], unique=False
        )

    op.create_table(
        "result_summaries",
        sa.Column("analysis_result_id", sa.Integer(), nullable=False),
        sa.Column("suspicious_for_malignancy", sa.String(length=16), nullable=False),
        sa.Column("multiple_lesions", sa.String(length=16), nullable=False),
        sa.Column("canal_compromise", sa.String(length=16), nullable=False),
        sa.Column("suspicious_level_count", sa.Integer(), nullable=False),
        sa.Column("impression", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_result_id"],
            ["analysis_results.id"],
            name=op.f("fk_result_summaries_analysis_result_id_analysis_results"),
        ),
        sa.PrimaryKeyConstraint("analysis_result_id", name=op.f("pk_result_summaries")),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_at", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_attempts_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False)

    op.create_table(
        "delivery_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("result_object_id", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", node.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("dimse_status", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_items_delivery_id_deliveries")
        ),
        sa.ForeignKeyConstraint(
            ["result_object_id"],
            ["result_objects.id"],
            name=op.f("fk_delivery_items_result_object_id_result_objects"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_items")),
        sa.UniqueConstraint("delivery_id", "result_object_id", name=op.f("uq_delivery_items_delivery_id")),
    )
    with op.batch_alter_table("delivery_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_items_delivery_id"), ["delivery_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_delivery_items_result_object_id"), ["result_object_id"], unique=False
        )

    op.create_table(
        "delivery_attempt_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("result_object_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("dimse_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["delivery_attempts.id"],
            name=op.f("fk_delivery_attempt_objects_attempt_id_delivery_attempts"),
        ),
        sa.ForeignKeyConstraint(
            ["result_object_id"],
            ["result_objects.id"],
            name=op.f("fk_delivery_attempt_objects_result_object_id_result_objects"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt_objects")),
    )
    with op.batch_alter_table("delivery_attempt_objects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_delivery_attempt_objects_attempt_id"), ["attempt_id"], unique=False
        )

    for name, query in _views().items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(list(_views())):
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("delivery_attempt_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempt_objects_attempt_id"))

    op.drop_table("delivery_attempt_objects")
    with op.batch_alter_table("delivery_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_items_result_object_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_items_delivery_id"))

    op.drop_table("delivery_items")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))

    op.drop_table("delivery_attempts")
    op.drop_table("result_summaries")
    with op.batch_alter_table("result_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_objects_sop_instance_uid"))
        batch_op.drop_index(batch_op.f("ix_result_objects_analysis_result_id"))

    op.drop_table("result_objects")
    with op.batch_alter_table("level_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_level_findings_analysis_result_id"))

    op.drop_table("level_findings")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_study_id"))
        batch_op.drop_index(batch_op.f("ix_deliveries_status"))
        batch_op.drop_index(batch_op.f("ix_deliveries_destination"))
        batch_op.drop_index(batch_op.f("ix_deliveries_analysis_result_id"))

    op.drop_table("deliveries")
    with op.batch_alter_table("study_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_events_study_id"))
        batch_op.drop_index(batch_op.f("ix_study_events_at"))

    op.drop_table("study_events")
    with op.batch_alter_table("retention_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_deletions_study_id"))

    op.drop_table("retention_deletions")
    op.drop_table("destination_breakers")
