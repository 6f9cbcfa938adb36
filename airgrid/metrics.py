"""All Prometheus metrics in one container with an injected registry; labels few and bounded.

A labelled series appears only once it is first touched, and Prometheus cannot see the first
increment of a counter that appears at 1 (``increase`` needs a sample before it): an alert on the
first escalation to level 1 after a restart, or on a restarted worker that receives nothing, would
never fire. :meth:`Metrics.initialise` therefore creates every known label combination at 0 at
start; the known values are the lists below, the grid directory and the rule catalogue
(``tests/unit/test_metrics.py`` checks the lists against every label the code writes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, get_args

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

import airgrid
from airgrid.domain.detection.engine import Outcome
from airgrid.domain.rules import FlatlineRule, ImpossibleRule
from airgrid.models.alarms import AlarmKind
from airgrid.models.common import POLLUTANTS
from airgrid.models.feedback import FeedbackAction
from airgrid.models.tasks import TaskEventType, TaskState

if TYPE_CHECKING:
    from airgrid.domain.directory import Directory
    from airgrid.domain.rules import RuleCatalogue

prometheus_client.disable_created_metrics()  # *_created series only clutter dashboards

# The label values the code writes (beyond the directory's grids and the catalogue's rules).
READING_OUTCOMES = (*get_args(Outcome), "rejected", "replayed")
# reason codes of a message that cannot be decoded (airgrid.domain.intake), on either topic
INTAKE_REASONS = ("empty", "too_large", "not_json", "not_object", "schema_version", "invalid")
# readings.dlq: intake, the reading's time or station, too late for its hour, under another key
READING_DLQ_REASONS = (*INTAKE_REASONS, "future", "too_old", "unknown_station", "too_late", "wrong_key")
# feedback.rejected: intake, the feedback agent, the owner, the task state machine
FEEDBACK_DLQ_REASONS = (
    *INTAKE_REASONS,
    "unknown_task",
    "unknown_worker",
    "wrong_grid",
    "not_reviewer",
    "illegal_transition",
)
FEEDBACK_OUTCOMES = ("applied", "duplicate", "rejected")
DEADLINE_OUTCOMES = ("applied", "stale", "unknown")
PROJECTION_KINDS = ("alarm", "task_event", "feedback", "dead_letter")
GRID_LEVELS = ("1", "2", "3")
ESCALATION_LEVELS = ("2", "1")  # the levels a task is escalated to
OPEN_STATES = tuple(s for s in get_args(TaskState) if s != "closed")

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
        # process_* (CPU, memory, open files, start time) and python_info, on this registry only
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge(
            "airgrid_build_info", "The running airgrid version (always 1)", ["version"], registry=r
        )
        self.build_info.labels(airgrid.__version__).set(1)
        self._open_keys: set[tuple[str, str]] = set()
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
        self.region_inputs = Counter(
            "airgrid_region_inputs_total",
            "Inputs of the region stage by kind (hour, alarm, tick) and outcome (applied, "
            "duplicate: a replay; late: its hour had completed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.region_dispatch = Counter(
            "airgrid_region_dispatch_total",
            "Opened grid alarms by the region stage's dispatch decision (level3, region, suppressed)",
            ["action"],
            registry=r,
        )
        self.region_hours = Counter(
            "airgrid_region_hours_total",
            "Region hours completed, by whether a regional episode held after them",
            ["episode"],
            registry=r,
        )
        self.supervision = Counter(
            "airgrid_supervision_tasks_total",
            "Supervision task requests applied by the owner, by duty and outcome (created; exists: "
            "asked again, it was created before; stale: the grid or duty is gone)",
            ["duty", "outcome"],
            registry=r,
        )
        self.owner_batch = Histogram(
            "airgrid_owner_batch_changes",
            "Task changes made durable by one flush of the owner (its group commit)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200),
            registry=r,
        )
        self.ingest_checkpoint = Histogram(
            "airgrid_ingest_checkpoint_rows",
            "Station states written by one ingest checkpoint (one per station changed since the last)",
            buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.ingest_unsaved = Gauge(
            "airgrid_ingest_unsaved_messages",
            "Messages ingest handled since its last checkpoint (read again after a crash)",
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
        self.sweeper_rebuilds = Counter(
            "airgrid_sweeper_index_rebuilds_total",
            "Times the deadline sweeper read every open task afresh (start, rebalance, every minute)",
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

    def initialise(self, directory: Directory, rules: RuleCatalogue) -> None:
        """Create every known label combination at 0 (call once at start; calling it again
        changes nothing). Gauges set from live state (lag by topic) are left to their writers."""
        for outcome in READING_OUTCOMES:
            self.readings.labels(outcome)
        for reason in READING_DLQ_REASONS:
            self.dlq.labels("readings", reason)
        for reason in FEEDBACK_DLQ_REASONS:
            self.dlq.labels("feedback", reason)
        for topic in ("alarms", "commands"):  # what the owner and ingest cannot read
            self.dlq.labels(topic, "unreadable")
        for rule_id, pollutant, severity in alarm_label_sets(rules):
            for kind in get_args(AlarmKind):
                self.alarms.labels(kind, rule_id, pollutant, severity)
        for level in GRID_LEVELS:
            for event_type in get_args(TaskEventType):
                self.task_events.labels(event_type, level)
            self.reminders.labels(level)
        for level in ESCALATION_LEVELS:
            self.escalations.labels(level)
        for action in get_args(FeedbackAction):
            for outcome in FEEDBACK_OUTCOMES:
                self.feedback.labels(action, outcome)
        self.feedback.labels("unknown", "rejected")
        for on_time in ("true", "false"):
            self.feedback_on_time.labels(on_time)
        for outcome in DEADLINE_OUTCOMES:
            self.deadline_commands.labels(outcome)
        for kind in PROJECTION_KINDS:
            self.projection_rows.labels(kind)
        for kind in ("hour", "alarm", "tick"):
            for outcome in ("applied", "duplicate", "late"):
                self.region_inputs.labels(kind, outcome)
        for action in ("level3", "region", "suppressed"):
            self.region_dispatch.labels(action)
        for held in ("true", "false"):
            self.region_hours.labels(held)
        for duty in ("patrol", "dispatch_review", "report"):
            for outcome in ("created", "exists", "stale"):
                self.supervision.labels(duty, outcome)
        l1 = sorted(g.id for g in directory.grids.values() if g.level == 1)
        self._open_keys = {(grid, state) for grid in l1 for state in OPEN_STATES}
        self.set_open_tasks({})

    def set_open_tasks(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Open tasks per (level-1 grid, state): every known pair is set, 0 where none is open
        (a grid with no open task shows 0, not "no data"); pairs no longer counted are dropped."""
        gauge = self.open_tasks
        gauge.clear()
        for key in sorted(self._open_keys | set(counts)):
            gauge.labels(*key).set(counts.get(key, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def alarm_label_sets(rules: RuleCatalogue) -> Iterable[tuple[str, str, str]]:
    """(rule, pollutant, severity) of every alarm the catalogue can raise; pollutant "" for rules
    over several pollutants (AQI, silence), each pollutant of the per-pollutant quality rules."""
    for rule in rules.rules:
        pollutants: Iterable[str]
        if isinstance(rule, FlatlineRule):
            pollutants = rule.pollutants
        elif isinstance(rule, ImpossibleRule):
            pollutants = POLLUTANTS  # a negative value of any pollutant, and ranges, PM2.5 > PM10
        else:
            pollutants = (getattr(rule, "pollutant", ""),)
        for pollutant in pollutants:
            yield rule.id, pollutant, rule.severity
