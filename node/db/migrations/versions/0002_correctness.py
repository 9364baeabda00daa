"""correctness (issue 17): content generations, instance versions, association identity

- ``studies.content_version`` and ``analysis_results.content_version``: the
  generation of a study's content, and the one an analysis read;
- ``instances.version`` / ``instances.is_current``: a SOP Instance UID re-sent
  with other content is kept as a new version (one current per UID);
- ``series.unusable_reason``: why the analysis could not use a series;
- ``associations.node_id`` / ``node_listener``: the node process and listener
  that served it, for the start-up sweep of rows left open by a crash;
- ``association_studies``: which association stored into which study, and when
  it last did (a study does not complete while one is still open).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import node.db.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "association_studies",
        sa.Column("association_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("first_stored_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_stored_at", node.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["association_id"], ["associations.id"],
            name=op.f("fk_association_studies_association_id_associations"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_association_studies_study_id_studies")
        ),
        sa.PrimaryKeyConstraint("association_id", "study_id", name=op.f("pk_association_studies")),
    )
    with op.batch_alter_table("association_studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_association_studies_study_id"), ["study_id"], unique=False)

    with op.batch_alter_table("analysis_results", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("content_version", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("associations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("node_listener", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_associations_node_listener"), ["node_listener"], unique=False)

    # Every existing row is the only version of its SOP Instance UID, hence current.
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("is_current", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.drop_constraint(batch_op.f("uq_instances_sop_instance_uid"), type_="unique")
        batch_op.create_unique_constraint(
            "uq_instances_sop_instance_uid_version", ["sop_instance_uid", "version"]
        )
        batch_op.create_index(
            "ix_instances_current_sop_instance_uid", ["sop_instance_uid"], unique=True,
            sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current"),
        )

    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unusable_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("content_version", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): copying a table other tables refer to
    # fails under foreign_keys=ON.
    with op.batch_alter_table("studies", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("content_version")

    with op.batch_alter_table("series", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("unusable_reason")

    # Older versions cannot be represented under a unique SOP Instance UID: only current rows stay.
    op.execute(sa.text("DELETE FROM instances WHERE NOT is_current"))
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index("ix_instances_current_sop_instance_uid")
        batch_op.drop_constraint("uq_instances_sop_instance_uid_version", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_instances_sop_instance_uid"), ["sop_instance_uid"])
        batch_op.drop_column("is_current")
        batch_op.drop_column("version")

    with op.batch_alter_table("associations", schema=None, recreate="never") as batch_op:
        batch_op.drop_index(batch_op.f("ix_associations_node_listener"))
        batch_op.drop_column("node_listener")
        batch_op.drop_column("node_id")

    with op.batch_alter_table("analysis_results", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("content_version")

    with op.batch_alter_table("association_studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_association_studies_study_id"))

    op.drop_table("association_studies")
