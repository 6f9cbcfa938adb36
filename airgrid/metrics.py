"""All Prometheus metrics in one container with an injected registry; labels few and bounded."""

from __future__ import annotations

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

prometheus_client.disable_created_metrics()  # *_created series only clutter dashboards

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# the stages that count internal errors; each series exists from the start (an alert on the first
# error needs the zero before it)
STAGES = ("ingest", "owner", "feedback", "sweeper", "silence", "warnings")
FEEDBACK_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800)


class Metrics:
    """Every metric of a worker. Tests pass a fresh ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.readings = Counter("airgrid_readings_total", "Readings by outcome", ["outcome"], registry=r)
        self.dlq = Counter(
            "airgrid_dlq_total",
            "Messages sent to a DLQ/rejected topic",
            ["topic", "reason"],
            registry=r,
        )
        self.alarms = Counter(
            "airgrid_alarms_total",
            "Alarm events emitted",
            ["kind", "rule", "pollutant", "severity"],
            registry=r,
        )
        self.task_events = Counter(
            "airgrid_task_events_total", "Task events emitted", ["type", "level"], registry=r
        )
        self.reminders = Counter(
            "airgrid_reminders_total", "Reminders sent, by grid level", ["level"], registry=r
        )
        self.escalations = Counter(
            "airgrid_escalations_total", "Escalations, by level escalated to", ["level"], registry=r
        )
        self.feedback = Counter(
            "airgrid_feedback_total",
            "Feedback by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.feedback_on_time = Counter(
            "airgrid_feedback_submitted_total",
            "Feedback submitted, on time or late",
            ["on_time"],
            registry=r,
        )
        self.feedback_latency = Histogram(
            "airgrid_feedback_latency_seconds",
            "Dispatch to feedback submitted",
            buckets=FEEDBACK_BUCKETS,
            registry=r,
        )
        self.detection_latency = Histogram(
            "airgrid_detection_latency_seconds",
            "Reading arrival to alarm emitted (processing delay)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.owner_batch = Histogram(
            "airgrid_owner_batch_changes",
            "Task changes made durable by one flush of the owner (its group commit)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=r,
        )
        self.open_tasks = Gauge(
            "airgrid_open_tasks",
            "Open tasks owned by this worker, by level-1 grid, state",
            ["grid_l1", "state"],
            registry=r,
        )
        self.sweeper_lag = Gauge(
            "airgrid_sweeper_lag_seconds",
            "How late the most overdue deadline step is",
            registry=r,
        )
        self.deadline_commands = Counter(
            "airgrid_deadline_commands_total",
            "Deadline commands by outcome",
            ["outcome"],
            registry=r,
        )
        self.projection_rows = Counter(
            "airgrid_projection_events_total",
            "Events written to the SQL projection",
            ["kind"],
            registry=r,
        )
        self.projection_errors = Counter(
            "airgrid_projection_errors_total", "Failed projection writes (retried)", registry=r
        )
        self.projection_seconds = Histogram(
            "airgrid_projection_write_seconds",
            "Time of one batched projection write",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.projection_lag = Gauge(
            "airgrid_projection_lag_messages",
            "Messages the SQL projection has not written yet (its own consumer group)",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "airgrid_consumer_lag_messages",
            "Messages not yet consumed, by topic",
            ["topic"],
            registry=r,
        )

        self.internal_errors = Counter(
            "airgrid_internal_errors_total",
            "Errors not caused by the message being handled (retried, never dead-lettered), by stage",
            ["stage"],
            registry=r,
        )
        for stage in STAGES:
            self.internal_errors.labels(stage)
        self.tables_unusable = Gauge(
            "airgrid_tables_unusable",
            "Tables this worker cannot write now (changelog missing from metadata or assignment)",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
