"""The region stage: one writer per region. Folds the stations' closed hours and opened grid
alarms (``region-inputs``, keyed by region: ingest re-keys them) into the region's state
(domain/regional.py), publishes each completed hour on ``regions``, local-excess alarms on
``alarms``, and the dispatch of every opened grid alarm on ``task-commands`` for the owner.

Order for a crash: the outputs are sent and their acks awaited, then the state is written. A kill
before the write leaves the state as it was, and the re-delivered input produces the same
outputs again (same alarm ids, same task ids: the owner and subscribers drop the copies); a kill
after it cannot lose an output, Kafka had them all.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from airgrid.domain.detection.compiled import RuleBook
from airgrid.domain.detection.warnings import StationWarnings
from airgrid.domain.regional import Outcome, RegionLogic, RegionState
from airgrid.metrics import Metrics
from airgrid.models.codecs import encode, first_line
from airgrid.models.regions import DispatchCommand, RegionAlarm, RegionTick, StationHour
from airgrid.stages.ports import Clock, Delivery, Outlet, Table, refuse

log = logging.getLogger(__name__)


class RegionStage:
    """Applies one ``region-inputs`` message to its region's state."""

    def __init__(
        self,
        *,
        regions: Table,
        records: Outlet,
        alarms: Outlet,
        commands: Outlet,
        commands_dlq: Outlet,
        logic: RegionLogic | None,
        rulebook: RuleBook,
        warnings: StationWarnings,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.regions = regions
        self.records = records
        self.alarms = alarms
        self.commands = commands
        self.commands_dlq = commands_dlq
        self.logic = logic
        self.rulebook = rulebook
        self.warnings = warnings
        self.m = metrics
        self.clock = clock

    async def handle(self, msg: Delivery) -> None:
        now = self.clock()
        try:
            data = orjson.loads(msg.value or b"")
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object was expected, not {type(data).__name__}")
            kind = data.get("kind")
            parsed: StationHour | RegionAlarm | RegionTick
            if kind == "hour":
                parsed = StationHour.model_validate(data)
            elif kind == "alarm":
                parsed = RegionAlarm.model_validate(data)
            else:
                parsed = RegionTick.model_validate(data)
        except ValueError as exc:  # only airgrid writes this topic: a bug or a foreign writer
            reason = f"unreadable region input: {first_line(exc)}"
            await refuse(self.commands_dlq, msg, "unreadable", reason, now)
            self.m.dlq.labels("commands", "unreadable").inc()
            return
        if self.logic is None:  # the regional logic is off (no [regional] in the rules)
            return
        await self.apply(parsed, now)

    async def apply(self, msg: StationHour | RegionAlarm | RegionTick, now: datetime) -> None:
        assert self.logic is not None
        region = msg.region
        state = RegionState.from_json(self.regions.get(region))
        now_ts = now.timestamp()
        if isinstance(msg, StationHour):
            rules = self.rulebook.for_level(self.warnings.level(msg.station_id, now))
            values = {str(p): v for p, v in msg.values.items()}
            out = self.logic.add_hour(state, region, msg.station_id, msg.hour, values, rules, now_ts)
        elif isinstance(msg, RegionAlarm):
            rules = self.rulebook.for_level(self.warnings.level(msg.alarm.station_id, now))
            out = self.logic.add_alarm(state, region, msg.hour, msg.alarm, rules, now_ts)
        else:
            out = self.logic.tick(state, region, self.rulebook.for_level("none"), now_ts)
        outcome = "late" if out.late else "duplicate" if out.duplicate else "applied"
        self.m.region_inputs.labels(msg.kind, outcome).inc()
        if out.late or out.duplicate:
            return
        await self.publish(region, out)
        self.regions[region] = state.to_json()

    async def publish(self, region: str, out: Outcome) -> None:
        """Send every output and wait for Kafka's acks (before the state is written)."""
        if out.empty:
            return
        key = region.encode()
        pending = [await self.records.send(key=key, value=encode(r)) for r in out.hours]
        for alarm in out.alarms:
            pending.append(await self.alarms.send(key=alarm.station_id.encode(), value=encode(alarm)))
            self.m.alarms.labels(alarm.kind, alarm.rule_id, alarm.pollutant or "", alarm.severity).inc()
        for alarm, task in out.dispatch:
            owner = alarm.station_id if task is None else task.episode.station_id
            cmd = DispatchCommand(station_id=owner, alarm=alarm, region=task)
            pending.append(await self.commands.send(key=owner.encode(), value=encode(cmd)))
        for decision in out.decisions:
            pending.append(await self.records.send(key=key, value=encode(decision)))
            self.m.region_dispatch.labels(decision.action).inc()
            log.info("region %s: alarm %s -> %s", region, decision.alarm_id, decision.action)
        for record in out.hours:
            self.m.region_hours.labels("true" if record.episode else "false").inc()
        for ack in pending:
            await ack


class RegionSweep:
    """A timer's look at every region this worker owns: a ``tick`` for each whose oldest open
    hour waited too long by the wall clock (a timer may not write a table)."""

    def __init__(self, stage: RegionStage, inputs: Outlet, interval_s: float = 60.0) -> None:
        self.stage = stage
        self.inputs = inputs
        self.interval_s = interval_s

    async def sweep(self) -> int:
        logic = self.stage.logic
        if logic is None:
            return 0
        now = self.stage.clock()
        sent = 0
        for region, raw in list(self.stage.regions.items()):
            if logic.tick_due(RegionState.from_json(raw), now.timestamp()):
                tick = RegionTick(region=region, at=now)
                await self.inputs.send(key=region.encode(), value=encode(tick))
                sent += 1
        return sent
