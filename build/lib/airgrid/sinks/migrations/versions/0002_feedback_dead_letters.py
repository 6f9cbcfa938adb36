"""Feedback received, and the rows of readings.dlq and feedback.rejected.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.String(100), primary_key=True),
        sa.Column("task_id", sa.String(120), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("source_found", sa.Integer),
        sa.Column("source_type", sa.String(32)),
        sa.Column("sources_inspected", sa.Integer),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_feedback_task_id", "feedback", ["task_id"])
    op.create_index("ix_feedback_at", "feedback", ["at"])
    op.create_table(
        "dead_letters",
        sa.Column("letter_id", sa.String(300), primary_key=True),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("task_id", sa.String(120)),
        sa.Column("feedback_id", sa.String(100)),
        sa.Column("key", sa.String(300)),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_dead_letters_day_topic_reason", "dead_letters", ["day", "topic", "reason_code"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("feedback")
