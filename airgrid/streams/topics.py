"""The topic catalogue: names, keys and how airgrid creates them."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from airgrid.config.settings import Settings

log = logging.getLogger(__name__)

# public contract (see README) and one internal topic
PUBLIC = (
    "readings",
    "readings.dlq",
    "alarms",
    "feedback",
    "feedback.rejected",
    "task-events",
    "warnings",
)
INTERNAL = ("task-commands", "station-commands")


@dataclass(frozen=True)
class TopicNames:
    """Full names, with the configured prefix."""

    readings: str
    readings_dlq: str
    alarms: str
    feedback: str
    feedback_rejected: str
    task_events: str
    warnings: str
    task_commands: str
    station_commands: str = ""  # detection commands keyed by station (the silence check)

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        t = settings.topic
        return cls(
            readings=t("readings"),
            readings_dlq=t("readings.dlq"),
            alarms=t("alarms"),
            feedback=t("feedback"),
            feedback_rejected=t("feedback.rejected"),
            task_events=t("task-events"),
            warnings=t("warnings"),
            task_commands=t("task-commands"),
            station_commands=t("station-commands"),
        )

    def all(self) -> list[str]:
        return list(self.__dict__.values())


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


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every airgrid topic that is missing, with the configured partitions."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    names = TopicNames.of(settings)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))  # type: ignore[arg-type]
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names.all() if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker raced us: fine
                await admin.create_topics(
                    [NewTopic(n, settings.topic_partitions, settings.topic_replication) for n in missing]
                )
            log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
