"""The binding: the one module that calls ``app.agent``, ``app.timer``, ``app.Table``, ``app.task``
and ``app.page``. It builds the Faust app, the wiring and the stages, and connects each stage to
its stream, timer or task. Stages know nothing of Faust; their drivers here are a few lines each.

Every stream agent runs with ``concurrency=1`` (one writer per partition) and hands each event to
its stage through the retrier: a message that is itself invalid is refused by the stage, anything
else is retried, held for a re-read after a rebalance, or stops the worker (worker/retry.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import faust

from airgrid.config.settings import Settings
from airgrid.domain.directory import Upwind
from airgrid.domain.regional import region_of
from airgrid.domain.supervision import Supervision
from airgrid.kafka.follow import follow
from airgrid.kafka.readback import published_ids
from airgrid.kafka.topics import TABLES, TopicNames
from airgrid.metrics import Metrics
from airgrid.patches import PatchedApp, install
from airgrid.patches.event_context import event_now, writing_as
from airgrid.patches.producer import acknowledged, send_now
from airgrid.patches.table_guard import TableGuard
from airgrid.sinks.base import SinkRunner
from airgrid.sinks.sql import SqlProjection, make_engine
from airgrid.sinks.sql.sink import ProjectionSink
from airgrid.stages.deadlines import DeadlineSweeper
from airgrid.stages.feedback import FeedbackIntake
from airgrid.stages.ingest import Ingest, SilenceSweep, StateLost
from airgrid.stages.owner import TaskOwner
from airgrid.stages.ports import Delivery
from airgrid.stages.regions import RegionStage, RegionSweep
from airgrid.stages.supervision import SupervisionScheduler
from airgrid.stages.warnings import WarningsFollower
from airgrid.worker.retry import Retrier
from airgrid.worker.web import Views
from airgrid.worker.wiring import Tables, Topics, Wiring, utc_now

log = logging.getLogger(__name__)
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


@dataclass(frozen=True)
class Bound:
    """What the binding built, kept on the app as ``app.airgrid`` (for the tests and the views)."""

    wiring: Wiring
    ingest: Ingest
    silence: SilenceSweep
    owner: TaskOwner
    intake: FeedbackIntake
    sweeper: DeadlineSweeper
    warnings: WarningsFollower
    regions: RegionStage
    region_sweep: RegionSweep
    scheduler: SupervisionScheduler
    guard: TableGuard
    projection: SinkRunner | None


def delivery(event: Any) -> Delivery:
    """A Faust stream event as the stages see it."""
    msg = event.message
    return Delivery(msg.topic, msg.partition, msg.offset, event.key, event.value)


def create_app(
    settings: Settings, metrics: Metrics | None = None, clock: Callable[[], datetime] = utc_now
) -> PatchedApp:
    """The Faust app with every stage bound; data files are loaded and validated here."""
    s = settings
    app = PatchedApp(
        s.app_id,
        broker=s.broker,
        broker_credentials=_credentials(s),
        store="rocksdb://" if s.store == "rocksdb" else "memory://",
        datadir=str(s.data_dir / "faust"),
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication,
        table_standby_replicas=0,
        # ensure_topics creates every topic and changelog before the worker starts; Faust's own
        # creation asks the metadata's controller id, in KRaft a random broker (KIP-590), which may
        # be one just killed: the start failed with NodeNotReadyError (cluster fault campaign)
        topic_allow_declare=False,
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
    install(app)
    app.fetch_settings = (s.consumer_fetch_min_bytes, s.consumer_fetch_max_wait_ms)
    names = TopicNames.of(s)

    def topic(name: str) -> Any:
        return app.topic(name, partitions=s.topic_partitions, **RAW)

    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=s.topic_partitions, key_type=str)

    topics = Topics(
        readings_dlq=topic(names.readings_dlq),
        alarms=topic(names.alarms),
        alarms_dlq=topic(names.alarms_dlq),
        feedback_rejected=topic(names.feedback_rejected),
        task_events=topic(names.task_events),
        task_commands=topic(names.task_commands),
        station_commands=topic(names.station_commands),
        commands_dlq=topic(names.commands_dlq),
        region_inputs=topic(names.region_inputs),
        regions=topic(names.regions),
    )
    tables = Tables(
        stations=table("stations"),
        tasks=table("tasks"),
        station_open=table("station-open-task"),
        regions=table("regions"),
    )
    if set(app.tables) != set(TABLES):  # ensure_topics creates the changelogs of TABLES
        raise RuntimeError(f"tables {sorted(app.tables)} differ from the catalogue {sorted(TABLES)}")
    w = Wiring.build(s, topics, tables, metrics=metrics, clock=clock)
    bound = _stages(app, w)
    app.airgrid = bound
    retrier = Retrier(app, w.metrics, give_up_s=s.internal_retry_seconds, fatal=(StateLost,))
    _bind_ingest(app, w, bound, retrier)
    _bind_owner(app, w, bound, retrier)
    _bind_feedback(app, w, bound, retrier)
    _bind_regions(app, w, bound, retrier)
    _bind_timers(app, w, bound)
    _bind_tasks(app, w, bound)
    views = Views(app, s.app_id, w.metrics, bound.guard)
    for path, handler in (
        ("/metrics", views.metrics_page),
        ("/health", views.ready),  # readiness, as before
        ("/health/ready", views.ready),
        ("/health/live", views.live),
    ):
        app.page(path)(_view(handler))
    return app


def _view(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A plain function for ``app.page`` (Faust binds what it is given to its own view class)."""

    async def view(web: Any, request: Any) -> Any:
        return await handler(web, request)

    view.__name__ = view.__qualname__ = getattr(handler, "__name__", "view")
    return view


def _stages(app: Any, w: Wiring) -> Bound:
    s, t, tb, n = w.settings, w.topics, w.tables, w.names
    ingest = Ingest(
        stations=tb.stations,
        alarms=t.alarms,
        readings_dlq=t.readings_dlq,
        commands_dlq=t.commands_dlq,
        commands_topic=n.station_commands,
        rulebook=w.rulebook,
        warnings=w.warnings,
        directory=w.directory,
        limits=w.limits,
        metrics=w.metrics,
        clock=w.clock,
        release=lambda: send_now(app.producer),
        current_event=event_now,
        writing_as=writing_as,
        checkpoint_s=s.checkpoint_interval_seconds,
        checkpoint_max=s.checkpoint_max_readings,
        cache_max=s.state_cache_stations,
        region_of=_region_of(w),
        region_inputs=t.region_inputs if w.regional is not None else None,
    )

    sweeper = DeadlineSweeper(
        tasks=tb.tasks,
        station_open=tb.station_open,
        commands=t.task_commands,
        metrics=w.metrics,
        clock=w.clock,
        interval_s=s.sweep_interval_seconds,
        tables_ready=lambda: not (app.rebalancing or getattr(app, "in_recovery", False)),
        generation=lambda: app.consumer_generation_id,
    )

    async def published(key: bytes) -> set[str]:
        return await published_ids(s, n.task_events, key)

    owner = TaskOwner(
        tasks=tb.tasks,
        station_open=tb.station_open,
        events=t.task_events,
        rejected=t.feedback_rejected,
        alarms_dlq=t.alarms_dlq,
        commands_dlq=t.commands_dlq,
        alarms_topic=n.alarms,
        directory=w.directory,
        policies=w.policies,
        warnings=w.warnings,
        metrics=w.metrics,
        clock=w.clock,
        flush=lambda: acknowledged(app.producer),
        co_notify_radius_km=s.co_notify_radius_km,
        upwind=Upwind.of(s),
        published=published,
        release=lambda: send_now(app.producer),
        current_event=event_now,
        writing_as=writing_as,
        stored=sweeper.note,
        regional=w.regional is not None,
    )
    intake = FeedbackIntake(
        rejected=t.feedback_rejected,
        commands=t.task_commands,
        directory=w.directory,
        metrics=w.metrics,
        clock=w.clock,
        max_bytes=s.max_message_bytes,
    )
    guard = TableGuard(
        app,
        sources={
            "stations": (n.readings, n.station_commands),
            "tasks": (n.alarms, n.task_commands),
            "station-open-task": (n.alarms, n.task_commands),
            "regions": (n.region_inputs,),
        },
        partitions=s.topic_partitions,
        metrics=w.metrics,
    )
    projection = None
    if s.projection_enabled:
        engine = make_engine(s.sqlalchemy_url, statement_timeout=s.projection_statement_timeout_seconds)
        sink = ProjectionSink(SqlProjection(engine, zone=s.zone), n)
        projection = SinkRunner(sink, s, w.metrics, stopping=lambda: bool(app.should_stop))
    regions = RegionStage(
        regions=tb.regions,
        records=t.regions,
        alarms=t.alarms,
        commands=t.task_commands,
        commands_dlq=t.commands_dlq,
        logic=w.regional,
        rulebook=w.rulebook,
        warnings=w.warnings,
        metrics=w.metrics,
        clock=w.clock,
    )
    return Bound(
        wiring=w,
        ingest=ingest,
        silence=SilenceSweep(ingest, t.station_commands),
        owner=owner,
        intake=intake,
        sweeper=sweeper,
        warnings=WarningsFollower(w.board),
        regions=regions,
        region_sweep=RegionSweep(regions, t.region_inputs),
        scheduler=SupervisionScheduler(
            directory=w.directory,
            supervision=w.policies.supervision if s.supervision_enabled else Supervision(),
            tasks=tb.tasks,
            commands=t.task_commands,
            clock=w.clock,
            zone=s.zone,
            owns=_owner_of(app, n.task_commands, s.topic_partitions),
            interval_s=s.supervision_interval_seconds,
            tables_ready=lambda: not (app.rebalancing or getattr(app, "in_recovery", False)),
        ),
        guard=guard,
        projection=projection,
    )


def _bind_ingest(app: Any, w: Wiring, b: Bound, retrier: Retrier) -> None:
    """Readings and station commands, a checkpoint at a time: each message's offset is deferred
    (no commit passes it) until the checkpoint after it is written; a rebalance drops the states
    in memory (the partitions are read again from the committed offsets). The agent checkpoints
    while messages flow, a timer when they stop; the stage's lock keeps both apart."""
    n, ingest = w.names, b.ingest
    topics = {n.readings, n.station_commands}
    channel = app.topic(n.readings, n.station_commands, partitions=w.settings.topic_partitions, **RAW)

    async def checkpoint() -> None:  # under ingest.lock
        try:
            written = await ingest.checkpoint(writable)
        except Exception:  # the states stay unsaved, their readings uncommitted: the next one tries
            ingest.failed(asyncio.get_running_loop().time())
            w.metrics.internal_errors.labels("ingest").inc()
            log.exception("ingest: a checkpoint failed; the next one writes what it did not")
            return
        if written is None:  # a rebalance while it waited for Kafka: the states were dropped
            log.info("ingest: a rebalance came during a checkpoint; its states were dropped")
            return
        app.consumer.saved(topics)

    def writable() -> bool:
        """The states may be written: no rebalance under way, none since they were read."""
        return not app.rebalancing and ingest.current(app.consumer_generation_id)

    async def run(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            msg = delivery(event)
            async with ingest.lock:
                ingest.adopt(event.message.generation_id)  # a rebalance since: states dropped
                app.consumer.defer(event.message)
                await retrier.run("ingest", event, lambda: ingest.handle(msg))  # noqa: B023
                if ingest.due(loop.time()) and writable():
                    await checkpoint()

    async def when_idle() -> None:
        if app.rebalancing or not ingest.idle(asyncio.get_running_loop().time()):
            return
        async with ingest.lock:
            if ingest.idle(asyncio.get_running_loop().time()) and writable():
                await checkpoint()

    app.agent(channel, name="airgrid.ingest", concurrency=1)(run)
    app.timer(ingest.idle_s, name="airgrid.ingest_checkpoint")(when_idle)


def _bind_owner(app: Any, w: Wiring, b: Bound, retrier: Retrier) -> None:
    n, owner = w.names, b.owner
    channel = app.topic(n.alarms, n.task_commands, **RAW)

    async def group_commit() -> None:
        try:
            await owner.finish()
        except Exception:  # the outboxes stay stored; the sweeper asks for them again
            w.metrics.internal_errors.labels("owner").inc()
            log.exception("owner: a group commit failed; its outboxes wait for the sweeper")

    async def own(stream: Any) -> None:
        queue = getattr(getattr(stream, "channel", None), "queue", None)
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            msg = delivery(event)
            await retrier.run("owner", event, lambda: owner.handle(msg))  # noqa: B023
            if owner.due(queue is None or queue.empty(), loop.time()):
                await group_commit()

    app.agent(channel, name="airgrid.owner", concurrency=1)(own)


def _bind_feedback(app: Any, w: Wiring, b: Bound, retrier: Retrier) -> None:
    source = app.topic(w.names.feedback, **RAW)

    async def intake(stream: Any) -> None:
        async for event in stream.events():
            msg = delivery(event)
            await retrier.run("feedback", event, lambda: b.intake.handle(msg))  # noqa: B023

    app.agent(source, name="airgrid.feedback", concurrency=1)(intake)


def _bind_regions(app: Any, w: Wiring, b: Bound, retrier: Retrier) -> None:
    source = app.topic(w.names.region_inputs, partitions=w.settings.topic_partitions, **RAW)

    async def regions(stream: Any) -> None:
        async for event in stream.events():
            msg = delivery(event)
            await retrier.run("regions", event, lambda: b.regions.handle(msg))  # noqa: B023

    app.agent(source, name="airgrid.regions", concurrency=1)(regions)


def _owner_of(app: Any, topic: str, partitions: int) -> Callable[[str], bool]:
    """Whether this worker owns the partition of ``topic`` a key goes to (the producer's default
    partitioner: murmur2 of the key bytes, as aiokafka computes it)."""
    from aiokafka.partitioner import murmur2

    def owns(key: str) -> bool:
        partition = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
        return any(tp.topic == topic and tp.partition == partition for tp in app.consumer.assignment())

    return owns


def _region_of(w: Wiring) -> Callable[[str], str | None] | None:
    """Station -> its region (the rules' [regional] level), from the directory."""
    if w.regional is None:
        return None
    level = w.regional.cfg.level
    directory = w.directory
    return lambda station: region_of(directory, station, level)


def _bind_timers(app: Any, w: Wiring, b: Bound) -> None:
    """Timers never write tables: each emits commands the agents apply (or only reads)."""

    def counted(stage: str, sweep: Callable[[], Any]) -> Callable[[], Any]:
        async def run() -> None:
            try:
                await sweep()
            except Exception:  # the next tick looks again
                w.metrics.internal_errors.labels(stage).inc()
                log.exception("%s failed", stage)

        run.__name__ = run.__qualname__ = f"{stage}_pass"
        return run

    app.timer(w.settings.sweep_interval_seconds, name="airgrid.sweeper")(counted("sweeper", b.sweeper.sweep))
    if (every := b.silence.interval_s) is not None:
        app.timer(every, name="airgrid.silence")(counted("silence", b.silence.sweep))
    if b.scheduler.enabled:
        every = b.scheduler.interval_s
        app.timer(every, name="airgrid.supervision")(counted("supervision", b.scheduler.sweep))
    if w.regional is not None:
        sweep = b.region_sweep
        app.timer(sweep.interval_s, name="airgrid.region_sweep")(counted("regions", sweep.sweep))

    async def guard_tables() -> None:
        await b.guard.check(asyncio.get_running_loop().time())

    app.timer(1.0, name="airgrid.table_guard")(guard_tables)


def _bind_tasks(app: Any, w: Wiring, b: Bound) -> None:
    """The long-running readers that are not Faust agents (their own Kafka consumers)."""

    async def follow_warnings() -> None:
        def failed(exc: BaseException) -> None:
            w.metrics.internal_errors.labels("warnings").inc()

        await follow(w.settings, w.names.warnings, b.warnings.handle, on_failure=failed)

    app.task(follow_warnings)
    if b.projection is not None:
        app.task(b.projection.run)


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
