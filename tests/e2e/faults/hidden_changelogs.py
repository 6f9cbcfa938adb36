"""``airgrid ...`` with the tables' changelog topics missing from the client's metadata for
``HIDE_CHANGELOGS_S`` seconds after start: a broker whose metadata lags behind the creation of
the changelogs, as on a fresh app id in issue 18 (the topics exist; the client does not see them
when the group forms). A fault injector, like a network fault: the product has no switch for it.

    python tests/e2e/faults/hidden_changelogs.py worker -l info
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka.cluster import ClusterMetadata

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, run as a script

UNTIL = time.monotonic() + float(os.environ.pop("HIDE_CHANGELOGS_S"))
_partitions_for_topic = ClusterMetadata.partitions_for_topic


def partitions_for_topic(self: ClusterMetadata, topic: str) -> Any:
    if topic.endswith("-changelog") and time.monotonic() < UNTIL:
        return None  # what the client knows of a topic its metadata does not show
    return _partitions_for_topic(self, topic)


ClusterMetadata.partitions_for_topic = partitions_for_topic  # type: ignore[method-assign]

if __name__ == "__main__":
    from airgrid.cli import main

    main(sys.argv[1:])
