"""Patches of Faust and aiokafka internals, one module per upstream defect (docs/patches.md).

``PatchedApp`` is the Faust app with the app-level patches; ``install(app)`` checks that the
installed faust-streaming and aiokafka are the versions the patches were written for, and puts the
transport patches in place. Outside this package only reads touch private names: the worker's
views and the table guard read Faust's ``app._consumer`` (``app.consumer`` would create one), and
the metadata reads of airgrid/kafka/ (``partitions_of``, ``ensure_topics``) an aiokafka client's
``_client``, for calls aiokafka has no public form of. The table guard, which also reaches the
consumer's client, lives here for that reason.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Consumer as FaustAIOKafkaConsumer
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from airgrid.patches.barrier import CommitBarrier
from airgrid.patches.commit_after_writes import CommitAfterWrites
from airgrid.patches.data_dir import create_parents
from airgrid.patches.fetch_batching import FAUST_MAX_WAIT_MS, FAUST_MIN_BYTES, FetchBatching
from airgrid.patches.flow_control import StreamFlowControl
from airgrid.patches.inline_delivery import InlineDelivery
from airgrid.patches.position_probe import PositionProbe
from airgrid.patches.producer import TrackingProducer
from airgrid.patches.repeated_offsets import RepeatedOffsets
from airgrid.patches.seek import SeekEveryPartition
from airgrid.patches.skipped_messages import SkippedMessages

# the versions every patch was written and tested against (pinned in pyproject.toml)
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}


class PatchError(RuntimeError):
    """The installed framework is not the one the patches were written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse to run on other versions of Faust or aiokafka: the patches touch their private
    names, which change between releases without notice."""
    found = installed if installed is not None else _installed()
    wrong = {name: found.get(name) for name, want in WRITTEN_FOR.items() if found.get(name) != want}
    if wrong:
        shown = ", ".join(f"{name} {got or 'missing'}" for name, got in sorted(wrong.items()))
        wanted = ", ".join(f"{name} {want}" for name, want in sorted(WRITTEN_FOR.items()))
        raise PatchError(
            f"airgrid's patches of Faust and aiokafka internals were written for {wanted}; installed: "
            f"{shown} (pip install -e . installs the pinned versions)"
        )


def _installed() -> dict[str, str]:
    found = {}
    for name in WRITTEN_FOR:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


class Consumer(  # type: ignore[misc]
    FetchBatching,
    InlineDelivery,
    CommitAfterWrites,
    CommitBarrier,
    RepeatedOffsets,
    SkippedMessages,
    SeekEveryPartition,
    PositionProbe,
    FaustAIOKafkaConsumer,
):
    """Faust's aiokafka consumer with the consumer patches, in this order (each ``_new_offset``
    post-processes the one after it: Faust's, repeats dropped, capped at a held message, then the
    batch remembered for a commit that may not happen; the fetch loop's deliveries run inline; the
    livelock probe skips a partition whose position is being reset)."""


class PatchedApp(faust.App):  # type: ignore[misc]
    """The Faust app with the app-level patches (flow control, data dir)."""

    airgrid: Any  # what the binding built on it (worker/binding.Bound)
    # the worker consumer's fetch.min.bytes and fetch.max.wait.ms (patches/fetch_batching.py)
    fetch_settings: tuple[int, int] = (FAUST_MIN_BYTES, FAUST_MAX_WAIT_MS)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return StreamFlowControl(self, loop=self.loop)

    def _create_directories(self) -> None:
        create_parents(self.conf)
        super()._create_directories()


def install(app: Any) -> None:
    """Check the framework versions and put the transport patches in place (before the worker
    starts; the consumer and producer are created on first use)."""
    check_versions()
    if not isinstance(app, PatchedApp):
        raise TypeError(f"install() needs a PatchedApp, not {type(app).__name__}")
    app.transport.Consumer = Consumer  # type: ignore[misc]  # this app's transport only
    app.transport.Producer = TrackingProducer  # type: ignore[misc]
