"""Supervision tasks and the pollution-source register: ``tasks.kind``, ``sources`` and
``source_inspections``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:  # SQLite: a copy of the table
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="alarm"))
    op.create_index("ix_tasks_kind", "tasks", ["kind"])
    op.create_table(
        "source_inspections",
        sa.Column("feedback_id", sa.String(100), primary_key=True),
        sa.Column("source_id", sa.String(120), primary_key=True),
        sa.Column("task_id", sa.String(120), nullable=False),
        sa.Column("task_kind", sa.String(16), nullable=False),
        sa.Column("grid_id", sa.String(64), nullable=False),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("at", TS, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("lon", sa.Float),
        sa.Column("lat", sa.Float),
        sa.Column("problem_found", sa.Integer, nullable=False),
        sa.Column("handled", sa.Integer, nullable=False),
    )
    op.create_index("ix_source_inspections_source_id", "source_inspections", ["source_id"])
    op.create_index("ix_source_inspections_at", "source_inspections", ["at"])
    op.create_table(
        "sources",
        sa.Column("source_id", sa.String(120), primary_key=True),
        sa.Column("grid_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("lon", sa.Float),
        sa.Column("lat", sa.Float),
        sa.Column("first_inspected", TS, nullable=False),
        sa.Column("last_inspected", TS, nullable=False),
        sa.Column("inspections", sa.Integer, nullable=False),
        sa.Column("problems", sa.Integer, nullable=False),
        sa.Column("handled", sa.Integer, nullable=False),
        sa.Column("repeat_offences", sa.Integer, nullable=False),
    )
    op.create_index("ix_sources_grid_id", "sources", ["grid_id"])


def downgrade() -> None:
    op.drop_table("sources")
    op.drop_table("source_inspections")
    op.drop_index("ix_tasks_kind", "tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("kind")
