"""The topic catalogue: names, keys and how airgrid creates them (table changelogs included)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from airgrid.config.settings import Settings
from airgrid.kafka.client import kafka_client_options

log = logging.getLogger(__name__)

# The worker's tables (Faust names them ``<app id>-<table>-changelog``); all partitioned like the
# topics they are written from. The binding checks that the app defines exactly these.
TABLES = ("stations", "tasks", "station-open-task", "regions")
VISIBLE_WITHIN_S = 30.0
# a broker of a cluster that is down or stalled, and not yet fenced by the controller, is still
# listed in the metadata for a few seconds (broker.session.timeout.ms): it is asked this long
NODE_ANSWER_S = 5.0


@dataclass(frozen=True)
class TopicNames:
    """Full names, with the configured prefix."""

    readings: str
    readings_dlq: str
    alarms: str
    alarms_dlq: str
    feedback: str
    feedback_rejected: str
    task_events: str
    warnings: str
    task_commands: str
    station_commands: str
    commands_dlq: str
    region_inputs: str
    regions: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        t = settings.topic
        return cls(
            readings=t("readings"),
            readings_dlq=t("readings.dlq"),
            alarms=t("alarms"),
            alarms_dlq=t("alarms.dlq"),
            feedback=t("feedback"),
            feedback_rejected=t("feedback.rejected"),
            task_events=t("task-events"),
            warnings=t("warnings"),
            task_commands=t("task-commands"),
            station_commands=t("station-commands"),
            commands_dlq=t("commands.dlq"),
            region_inputs=t("region-inputs"),
            regions=t("regions"),
        )

    def all(self) -> list[str]:
        return list(self.__dict__.values())


def changelog_topics(settings: Settings) -> list[str]:
    """The changelog topic of every table, as Faust names it."""
    return [f"{settings.app_id}-{table}-changelog" for table in TABLES]


def leader_topic(settings: Settings) -> str:
    """Faust's own topic for electing a leader worker (one partition); its consumers join the
    group like the rest, so it must be visible before the join too."""
    return f"{settings.app_id}-__assignor-__leader"


class TopicsError(Exception):
    """An existing topic cannot serve as configured (a one-line message naming it and the fix)."""


async def ensure_topics(settings: Settings, within: float = VISIBLE_WITHIN_S) -> list[str]:
    """Create every airgrid topic that is missing, the tables' changelogs included (compacted),
    with the configured partitions, replication factor and ``min.insync.replicas``; return when
    every broker's metadata shows all of them with all their partitions led, and the names of the
    topics it created.

    A worker must not join its group before then: Faust's assignor leaves out a topic that the
    group leader's metadata does not show yet ("Ignoring missing topic"), and a table whose
    changelog was left out cannot be written until the next metadata refresh, five minutes later
    (issue 18: a fresh app id lost 89 alarms that way)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = TopicNames.of(settings)
    changelogs = changelog_topics(settings)
    parts, repl = settings.topic_partitions, settings.topic_replication
    isr = {"min.insync.replicas": str(settings.min_insync_replicas)}
    compact = {"cleanup.policy": "compact", **isr}
    wanted = [NewTopic(n, parts, repl, topic_configs=isr) for n in names.all()]
    wanted += [NewTopic(n, parts, repl, topic_configs=compact) for n in changelogs]
    wanted.append(NewTopic(leader_topic(settings), 1, repl, topic_configs=isr))
    # the tables are partitioned like the topics their events come from
    copartitioned = {
        names.readings,
        names.station_commands,
        names.alarms,
        names.task_commands,
        names.region_inputs,
        *changelogs,
    }
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))  # type: ignore[arg-type]
    await admin.start()
    try:
        client = admin._client  # type: ignore[attr-defined]  # the admin client has no metadata call
        shown = await _first_view(client, [t.name for t in wanted], within)
        _check_copartitioned(shown, copartitioned, parts)
        missing = [t for t in wanted if t.name not in shown]
        brokers = len(client.cluster.brokers())
        if missing and brokers < repl:
            raise TopicsError(
                f"AIRGRID_TOPIC_REPLICATION is {repl} but the cluster at {settings.bootstrap_servers} has "
                f"{brokers} broker(s) registered now: set it at most the number of brokers (3 on a "
                "three-broker cluster), or start the missing ones"
            )
        if missing:
            await _create(admin, missing, within)
            log.info("created topics %s", ", ".join(t.name for t in missing))
        need = {t.name: shown[t.name][0] if t.name in shown else t.num_partitions for t in wanted}
        await wait_visible(client, need, within, copartitioned, parts)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def _create(admin: Any, topics: list[Any], within: float) -> None:
    """Create ``topics``; another worker creating them meanwhile is fine. The admin client sends
    the request to the metadata's controller id, in KRaft a random broker (KIP-590) that may be
    down: ask again, another broker is drawn."""
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await asyncio.wait_for(admin.create_topics(topics), NODE_ANSWER_S)
            return
        except TopicAlreadyExistsError:
            return
        except (KafkaError, TimeoutError, OSError):
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(0.5)
        await admin._client.force_metadata_update()


def _check_copartitioned(
    shown: dict[str, tuple[int, int]], copartitioned: AbstractSet[str], parts: int
) -> None:
    wrong = sorted(n for n, (count, _) in shown.items() if n in copartitioned and count != parts)
    if wrong:
        raise TopicsError(
            f"topic {wrong[0]} has {shown[wrong[0]][0]} partition(s), AIRGRID_TOPIC_PARTITIONS is "
            f"{parts}: the tables need their input topics and changelogs with the same count "
            "(recreate the topic, or set AIRGRID_TOPIC_PARTITIONS to match)"
        )


async def wait_visible(
    client: Any,
    topics: dict[str, int],
    within: float,
    copartitioned: AbstractSet[str] = frozenset(),
    parts: int = 0,
) -> None:
    """Wait until the metadata of every broker that answers shows each topic with its number of
    partitions, each with a leader; a new topic reaches the brokers' metadata caches a little
    later than the controller acknowledges its creation. A broker that does not answer (killed or
    stalled in a cluster) serves no client either, and catches up with the controller's metadata
    before it serves again, so it is not waited for. A co-partitioned topic seen with another
    count (one that someone else created meanwhile) is a :class:`TopicsError`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await client.force_metadata_update()
        views = await _views(client, [b.nodeId for b in client.cluster.brokers()], list(topics))
        lacking: set[str] = set() if views else set(topics)
        for shown in views.values():
            _check_copartitioned(shown, copartitioned, parts)
            lacking |= {t for t, n in topics.items() if shown.get(t, (0, 0))[1] < n}
        if not lacking:
            return
        if loop.time() >= deadline:
            raise TimeoutError(
                f"topics not visible on every broker after {within:.0f} s: {', '.join(sorted(lacking))}"
            )
        await asyncio.sleep(0.1)


async def _views(client: Any, nodes: list[int], topics: list[str]) -> dict[int, dict[str, tuple[int, int]]]:
    """What each of ``nodes`` shows of ``topics``; a node that does not answer within
    ``NODE_ANSWER_S`` is left out."""
    from aiokafka.errors import KafkaError

    views = {}
    for node in nodes:
        try:
            views[node] = await asyncio.wait_for(_partitions_shown(client, node, topics), NODE_ANSWER_S)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.info("broker %s does not answer (%s); not waiting for its metadata", node, type(exc).__name__)
    return views


async def _first_view(client: Any, topics: list[str], within: float) -> dict[str, tuple[int, int]]:
    """What the first broker that answers shows of ``topics``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        for node in [b.nodeId for b in client.cluster.brokers()]:
            views = await _views(client, [node], topics)
            if views:
                return views[node]
        if loop.time() >= deadline:
            raise TimeoutError(f"no broker answered a metadata request within {within:.0f} s")
        await asyncio.sleep(0.5)
        await client.force_metadata_update()


async def _partitions_shown(client: Any, node: int, topics: list[str]) -> dict[str, tuple[int, int]]:
    """Topic -> (partitions, partitions with a leader), as broker ``node`` knows them (existing
    topics only)."""
    from aiokafka.protocol.metadata import MetadataRequest

    response = await client.send(node, MetadataRequest(topics, allow_auto_topic_creation=False))
    return {
        topic: (len(parts), sum(1 for p in parts if p[0] == 0 and p[2] >= 0))  # no error, a leader
        for err, topic, _internal, parts in response.topics
        if err == 0
    }
