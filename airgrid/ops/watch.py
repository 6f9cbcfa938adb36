"""Readable live lines for alarms, task events and dead letters (``airgrid watch``)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import orjson

from airgrid.config.settings import Settings
from airgrid.kafka.client import kafka_client_options, partitions_of
from airgrid.kafka.topics import TopicNames

COLOURS = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "grey": "90",
    "bold": "1",
}
TASK_COLOUR = {
    "dispatched": "cyan",
    "alarm_joined": "grey",
    "reminded": "yellow",
    "escalated": "magenta",
    "acknowledged": "blue",
    "on_site": "blue",
    "feedback_submitted": "green",
    "departments_notified": "grey",
    "feedback_rejected": "red",
    "closed": "green",
}


class Formatter:
    """Turns one message of a watched topic into one line."""

    def __init__(self, names: TopicNames, zone: ZoneInfo, colour: bool) -> None:
        self.names = names
        self.zone = zone
        self.colour = colour

    def c(self, name: str, text: str) -> str:
        return f"\x1b[{COLOURS[name]}m{text}\x1b[0m" if self.colour else text

    def t(self, iso: str | None) -> str:
        if not iso:
            return "-"
        return datetime.fromisoformat(iso).astimezone(self.zone).strftime("%m-%d %H:%M:%S")

    def line(self, topic: str, data: dict[str, Any]) -> str:
        n = self.names
        if topic == n.alarms:
            colour = {"opened": "red", "updated": "yellow", "cleared": "green"}[data["kind"]]
            what = f"{data['pollutant']} {data['value']}" if data.get("pollutant") else f"{data['value']}"
            if data.get("aqi") is not None and not data.get("pollutant"):
                what = f"AQI {data['aqi']}" + (f" {data['category']}" if data.get("category") else "")
            limit = f" (limit {data['threshold']})" if data.get("threshold") is not None else ""
            return (
                f"{self.c(colour, 'ALARM ' + data['kind']):<8} {data['station_id']:<6} "
                f"{data['rule_id']}: {what}{limit} hour {self.t(data['window_start'])} "
                f"[{data['severity']}]" + (f" ({data['change']})" if data.get("change") else "")
            )
        if topic == n.task_events:
            kind = data["type"]
            extra = ""
            if kind in ("dispatched", "escalated", "reminded"):
                extra = f" deadline {self.t(data.get('deadline_at'))}"
            if data.get("upwind"):
                extra += f" upwind {', '.join(data['upwind'])}"
            if data.get("worker_id"):
                extra += f" by {data['worker_id']}"
            if data.get("departments"):
                extra += f" -> {', '.join(data['departments'])}"
            if data.get("note"):
                extra += f" ({data['note']})"
            return (
                f"{self.c(TASK_COLOUR.get(kind, 'grey'), 'TASK  ' + kind)} {data['task_id']} "
                f"v{data['version']} grid {data['grid_id']} (level {data['level']}, "
                f"{data['state']}){extra}"
            )
        if topic == n.regions:
            if data.get("kind") == "dispatch":
                return (
                    f"{self.c('yellow', 'REGION dispatch')} {data['region']} {data['alarm_id']} -> "
                    f"{data['action']}" + (" (regional episode)" if data.get("episode") else "")
                )
            bg = ", ".join(f"{p} {v}" for p, v in sorted((data.get("background") or {}).items()))
            state = "regional episode" if data.get("episode") else "no episode"
            excess = f"; local excess {', '.join(data['local_excess'])}" if data.get("local_excess") else ""
            return (
                f"{self.c('grey', 'REGION hour')} {data['region']} {self.t(data['hour_start'])} "
                f"{data['reporting']}/{data['stations']} stations, background {bg or '-'}; {state}{excess}"
            )
        if topic in (n.readings_dlq, n.feedback_rejected):
            label = "DLQ   reading" if topic == n.readings_dlq else "REJECT feedback"
            origin = data.get("origin")
            source = (
                f"{origin.get('topic')}/{origin.get('partition')}@{origin.get('offset')}"
                if origin
                else f"{data.get('peer')} MN {data.get('mn') or '?'}"  # refused by a gateway
            )
            return f"{self.c('red', label)} {data['reason_code']}: {data['reason']} (from {source})"
        return f"{topic}: {data}"


async def watch(
    settings: Settings,
    out: TextIO = sys.stdout,
    from_beginning: bool = False,
    limit: int | None = None,
    to_end: bool = False,
) -> int:
    """Print lines until cancelled, or ``limit`` lines, or with ``to_end`` until the end of the
    topics as it was at the start (like ``kcat -e``); returns the number printed."""
    from aiokafka import AIOKafkaConsumer

    names = TopicNames.of(settings)
    topics = (names.alarms, names.task_events, names.readings_dlq, names.feedback_rejected, names.regions)
    fmt = Formatter(names, settings.zone, colour=out.isatty())
    consumer = AIOKafkaConsumer(
        *(() if to_end else topics),
        auto_offset_reset="earliest" if from_beginning else "latest",
        **kafka_client_options(settings),
    )
    await consumer.start()
    printed = 0
    try:
        messages = _until_end(consumer, topics, from_beginning) if to_end else _follow(consumer)
        async with contextlib.aclosing(messages):
            async for msg in messages:
                stamp = _written_at(msg, settings.zone)
                try:
                    text = fmt.line(msg.topic, orjson.loads(msg.value))
                except Exception as exc:  # a foreign message: show it, do not die
                    text = f"{msg.topic}: unreadable message ({exc})"
                print(f"{stamp} {text}", file=out, flush=True)
                printed += 1
                if limit is not None and printed >= limit:
                    break
    finally:
        await consumer.stop()
    return printed


def _written_at(msg: Any, zone: ZoneInfo) -> str:
    """When Kafka got the message (its record timestamp), not when it is printed: a replayed
    history shows its own times. HH:MM:SS today, MM-DD HH:MM:SS before."""
    at = datetime.fromtimestamp(msg.timestamp / 1000, zone) if msg.timestamp else datetime.now(zone)
    return at.strftime("%H:%M:%S" if at.date() == datetime.now(zone).date() else "%m-%d %H:%M:%S")


async def _follow(consumer: Any) -> AsyncGenerator[Any, None]:
    async for msg in consumer:
        yield msg


async def _until_end(
    consumer: Any, topics: tuple[str, ...], from_beginning: bool
) -> AsyncGenerator[Any, None]:
    """Every message from the start position up to the end offsets read once at the start;
    the position, not the last offset seen, says when a partition is done (a transaction's
    marker takes an offset that is never delivered)."""
    from aiokafka import TopicPartition

    found = await partitions_of(consumer, topics)
    tps = [TopicPartition(t, p) for t, parts in found.items() for p in parts]
    if not tps:
        return
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=1000)
        for tp, msgs in batch.items():
            for msg in msgs:
                if msg.offset < ends[tp]:
                    yield msg
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
