"""``ensure_topics`` on the real broker: every topic and every table changelog (compacted) exists
and every broker shows it before a worker joins its group (issue 18); an input topic with another
partition count stops the start with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from airgrid.config.settings import load_settings
from airgrid.kafka.topics import TopicNames, TopicsError, changelog_topics, ensure_topics, leader_topic

pytestmark = [pytest.mark.kafka]


async def test_topics_and_changelogs_exist_compacted_and_visible(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    settings = load_settings(
        broker=f"kafka://{kafka_bootstrap}", topic_prefix=f"t{uid}.", app_id=f"a{uid}", data_dir=tmp_path
    )
    created = await ensure_topics(settings)
    names = TopicNames.of(settings).all()
    changelogs = changelog_topics(settings)
    assert sorted(created) == sorted([*names, *changelogs, leader_topic(settings)])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {d["topic"]: d for d in await admin.describe_topics([*names, *changelogs])}
        assert all(len(described[t]["partitions"]) == settings.topic_partitions for t in names + changelogs)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in (changelogs[0], names[0])]
        )
        policy = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}["cleanup.policy"]
            for response in configs
            for resource in response.resources
        }
        assert policy == {changelogs[0]: "compact", names[0]: "delete"}
    finally:
        await admin.close()
    assert await ensure_topics(settings) == []  # a second start creates nothing


async def test_an_input_topic_with_other_partitions_stops_the_start(
    kafka_bootstrap: str, uid: str, tmp_path: Path
) -> None:
    settings = load_settings(broker=f"kafka://{kafka_bootstrap}", topic_prefix=f"t{uid}.", data_dir=tmp_path)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"t{uid}.readings", 1, 1)])  # auto-created, say
    finally:
        await admin.close()
    with pytest.raises(
        TopicsError, match=rf"topic t{uid}\.readings has 1 partition\(s\), AIRGRID_TOPIC_PARTITIONS is 4"
    ):
        await ensure_topics(settings)
