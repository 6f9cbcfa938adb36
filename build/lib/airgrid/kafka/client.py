"""Keyword arguments of every aiokafka client airgrid makes, from the settings; a topic's
partitions as the brokers know them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airgrid.config.settings import Settings


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """aiokafka keyword arguments for the configured security settings."""
    opts: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.broker_security_protocol,
    }
    if "SASL" in settings.broker_security_protocol:
        opts["sasl_mechanism"] = settings.broker_sasl_mechanism
        opts["sasl_plain_username"] = settings.broker_username
        opts["sasl_plain_password"] = (
            settings.broker_password.get_secret_value() if settings.broker_password else None
        )
    if "SSL" in settings.broker_security_protocol:
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(
            cafile=str(settings.broker_cafile) if settings.broker_cafile else None
        )
    return opts


async def partitions_of(consumer: Any, topics: Iterable[str]) -> dict[str, list[int]]:
    """Each topic's partitions (none for a missing topic), asked of the brokers: the view of a
    consumer that is not assigned them is empty, and aiokafka has no public call that asks
    (its client's ``fetch_all_metadata``)."""
    cluster = await consumer._client.fetch_all_metadata()
    return {topic: sorted(cluster.partitions_for_topic(topic) or ()) for topic in topics}
