"""Baseline: alarms, tasks and task events (the schema of the first projection).

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("alarm_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("pollutant", sa.String(8)),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("aqi", sa.Integer),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("emitted_at", TS, nullable=False),
    )
    op.create_index("ix_alarms_alarm_id", "alarms", ["alarm_id"])
    op.create_index("ix_alarms_station_id", "alarms", ["station_id"])
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(120), primary_key=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("grid_id", sa.String(64), nullable=False),
        sa.Column("grid_l3", sa.String(64), nullable=False),
        sa.Column("grid_l2", sa.String(64), nullable=False),
        sa.Column("grid_l1", sa.String(64), nullable=False),
        sa.Column("key_grid", sa.Integer, nullable=False),
        sa.Column("created_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deadline_at", TS),
        sa.Column("closed_at", TS),
    )
    for col in ("station_id", "state", "grid_id", "grid_l3", "grid_l2", "grid_l1"):
        op.create_index(f"ix_tasks_{col}", "tasks", [col])
    op.create_table(
        "task_events",
        sa.Column("task_id", sa.String(120), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("grid_id", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("feedback_id", sa.String(100)),
        sa.Column("alarm_id", sa.String(200)),
        sa.Column("note", sa.Text),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_task_events_type", "task_events", ["type"])
    op.create_index("ix_task_events_at", "task_events", ["at"])


def downgrade() -> None:
    op.drop_table("task_events")
    op.drop_table("tasks")
    op.drop_table("alarms")
