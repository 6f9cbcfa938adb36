"""The app factory: ``create_app(settings)`` builds the Faust app and registers every stage.

Imports point one way: agents import from ``streams``; this module imports agents only inside
``create_app`` to register them on the one app object it returns.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from airgrid.config.settings import Settings
from airgrid.domain.directory import Directory
from airgrid.domain.escalation import PolicyBook, load_policy_book
from airgrid.domain.intake import Limits
from airgrid.domain.rules import RuleCatalogue, load_rules
from airgrid.kafka.topics import TABLES, TopicNames
from airgrid.metrics import Metrics
from airgrid.patches.durable import FlushingConsumer, StreamFlowControl, TrackingProducer
from airgrid.patches.table_guard import TableGuard

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def no_warning(city: str) -> str:
    """The default warning hook: no heavy-pollution warning in force."""
    return "none"


@dataclass
class Runtime:
    """What every stage needs, built once at start and passed down (no globals)."""

    settings: Settings
    directory: Directory
    rules: RuleCatalogue
    policies: PolicyBook
    metrics: Metrics
    names: TopicNames
    clock: Clock = utc_now
    # the heavy-pollution warning level in force over a station (none/blue/yellow/orange/red), the
    # strictest of its city's and its regions'; chooses the escalation policy at dispatch
    warning_level: Callable[[str], str] = no_warning
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    guard: TableGuard | None = None

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(
            max_bytes=s.max_message_bytes,
            max_future=timedelta(seconds=s.max_future_skew_seconds),
            max_age=timedelta(days=s.max_reading_age_days),
        )


class AirgridApp(faust.App):  # type: ignore[misc]
    """The Faust app with the airgrid runtime attached."""

    runtime: Runtime

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        # a resume while the streams flow keeps what they have queued (patches/durable.py)
        return StreamFlowControl(self, loop=self.loop)

    def _create_directories(self) -> None:
        # Faust creates only the last level of its data dir: a data dir that does not exist yet
        # failed every start with FileNotFoundError (issue 18)
        self.conf.datadir.mkdir(parents=True, exist_ok=True)
        super()._create_directories()


def _credentials(settings: Settings) -> Any:
    if "SASL" in settings.broker_security_protocol:
        ctx = None
        if "SSL" in settings.broker_security_protocol:
            ctx = ssl.create_default_context(
                cafile=str(settings.broker_cafile) if settings.broker_cafile else None
            )
        return faust.SASLCredentials(
            username=settings.broker_username,
            password=settings.broker_password.get_secret_value() if settings.broker_password else None,
            mechanism=settings.broker_sasl_mechanism,
            ssl_context=ctx,
        )
    if settings.broker_security_protocol == "SSL":
        return ssl.create_default_context(
            cafile=str(settings.broker_cafile) if settings.broker_cafile else None
        )
    return None


def build_runtime(settings: Settings, metrics: Metrics | None = None, clock: Clock = utc_now) -> Runtime:
    """Load and validate the data files named by the settings."""
    directory = Directory.load(settings.grid_file)
    rules = load_rules(settings.rules_file)
    metrics = metrics or Metrics()
    metrics.initialise(directory, rules)  # every known series at 0 from the start
    return Runtime(
        settings=settings,
        directory=directory,
        rules=rules,
        policies=load_policy_book(settings.policy_file),
        metrics=metrics,
        names=TopicNames.of(settings),
        clock=clock,
    )


def create_app(settings: Settings, runtime: Runtime | None = None) -> AirgridApp:
    """Build the app and register agents, tables, timers, web pages and CLI commands."""
    rt = runtime or build_runtime(settings)
    s = settings
    app = AirgridApp(
        s.app_id,
        broker=s.broker,
        broker_credentials=_credentials(s),
        store="rocksdb://" if s.store == "rocksdb" else "memory://",
        datadir=str(s.data_dir / "faust"),
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, s.session_timeout_seconds / 3),
        web_host=s.web_host,
        web_port=s.web_port,
        web_bind=s.web_host,
        producer_acks=-1,
        producer_linger=s.producer_linger_seconds,
        autodiscover=False,
        origin="airgrid",
    )
    app.runtime = rt
    # commit offsets only after Kafka has what their events wrote (patches/durable.py)
    app.transport.Consumer = FlushingConsumer  # type: ignore[misc]  # this one transport only
    app.transport.Producer = TrackingProducer  # type: ignore[misc]
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    n = rt.names
    for attr, name in n.__dict__.items():
        rt.topics[attr] = app.topic(name, partitions=s.topic_partitions, **raw)

    from airgrid.stages import deadlines, feedback, ingest, owner, projection
    from airgrid.stages import warnings as warnings_agent
    from airgrid.worker import web

    warnings_agent.register(app, rt)
    ingest.register(app, rt)
    owner.register(app, rt)
    feedback.register(app, rt)
    deadlines.register(app, rt)
    if s.projection_enabled:
        projection.register(app, rt)
    if set(app.tables) != set(TABLES):  # ensure_topics creates the changelogs of TABLES
        raise RuntimeError(f"tables {sorted(app.tables)} differ from the catalogue {sorted(TABLES)}")
    n = rt.names
    rt.guard = guard = TableGuard(
        app,
        sources={
            "stations": (n.readings, n.station_commands),
            "tasks": (n.alarms, n.task_commands),
            "station-open-task": (n.alarms, n.task_commands),
        },
        partitions=s.topic_partitions,
        metrics=rt.metrics,
    )

    @app.timer(1.0, name="airgrid.table_guard")  # type: ignore[untyped-decorator]
    async def guard_tables() -> None:
        await guard.check(asyncio.get_running_loop().time())

    web.register(app, rt)
    return app
