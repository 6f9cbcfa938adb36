"""``airgrid topics``: create the topics that are missing."""

from __future__ import annotations

from airgrid.cli.base import OpsError, command
from airgrid.cli.common import run_async
from airgrid.config.settings import Settings


@command("topics")
def topics() -> int:
    """Create every airgrid topic that is missing, the tables' changelogs included, with
    AIRGRID_TOPIC_PARTITIONS partitions, and wait until every broker shows them. The worker does
    the same at start."""
    return run_async(_create)


async def _create(s: Settings) -> int:
    from airgrid.cli.broker import reach
    from airgrid.kafka.topics import TopicsError, ensure_topics

    await reach(s)
    try:
        made = await ensure_topics(s)
    except TopicsError as exc:
        raise OpsError(str(exc)) from None
    print("created: " + (", ".join(made) if made else "nothing, all topics exist"))
    return 0
