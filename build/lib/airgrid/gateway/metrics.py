"""Prometheus metrics of a gateway process, in one container with an injected registry.

Labels are few and bounded: a CN outside the known set is ``other``, reasons and outcomes are the
gateway's own codes. Never a station, an MN or a peer address as a label.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

prometheus_client.disable_created_metrics()

# CNs a station sends (uploads, notifications, answers, the heartbeat); anything else is "other"
KNOWN_CNS = frozenset(
    {
        *("1001", "1011", "1013", "1014", "1061", "1063", "2011", "2013", "2021", "2031"),
        *("2041", "2051", "2061", "2081", "3020", "9011", "9012", "9013", "9014", "9015"),
    }
)
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def cn_label(cn: str) -> str:
    return cn if cn in KNOWN_CNS else "other"


class GatewayMetrics:
    """Every metric of a gateway. Tests pass a fresh ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge("airgrid_gateway_open_connections", "Open station connections", registry=r)
        self.accepted = Counter(
            "airgrid_gateway_connections_total",
            "Connections by outcome (accepted, refused_limit)",
            ["outcome"],
            registry=r,
        )
        self.closed = Counter(
            "airgrid_gateway_disconnects_total",
            "Connections ended, by reason (peer, idle, refusals, junk, slow_reader, shutdown)",
            ["reason"],
            registry=r,
        )
        self.frames = Counter(
            "airgrid_gateway_frames_total",
            "Frames by command code and outcome (published, not_published, answered, held, refused, ...)",
            ["cn", "outcome"],
            registry=r,
        )
        self.refused = Counter(
            "airgrid_gateway_refused_total",
            "Frames and bytes refused to readings.dlq, by reason code",
            ["reason"],
            registry=r,
        )
        self.crc = Counter(
            "airgrid_gateway_crc_total", "Frames by the CRC variant that matched", ["variant"], registry=r
        )
        self.readings = Counter(
            "airgrid_gateway_readings_total", "Readings Kafka acknowledged on the readings topic", registry=r
        )
        self.publish_seconds = Histogram(
            "airgrid_gateway_publish_seconds",
            "Frame decoded to its readings acknowledged by Kafka",
            buckets=PUBLISH_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "airgrid_gateway_pending_messages", "Readings and dead letters awaiting Kafka", registry=r
        )
        self.dropped = Counter(
            "airgrid_gateway_values_dropped_total",
            "Values of accepted frames left out of readings (meteo, other_code, wind, ...)",
            ["kind"],
            registry=r,
        )
        self.backfill = Counter(
            "airgrid_gateway_backfill_frames_total",
            "Data frames marked as re-sent history (RF=1)",
            registry=r,
        )
        self.received = Counter(
            "airgrid_gateway_received_bytes_total", "Bytes received from stations", registry=r
        )
        self.answers = Counter(
            "airgrid_gateway_answers_total",
            "Answers to stations, by outcome (sent, lost: the connection was gone)",
            ["outcome"],
            registry=r,
        )
        self.publish_errors = Counter(
            "airgrid_gateway_publish_errors_total",
            "Kafka batches not acknowledged (frames left unanswered)",
            registry=r,
        )

        # The per-frame counts are plain integers, moved into the counters above by flush()
        # (before every scrape, and each second): a Prometheus increment takes a lock and costs
        # about as much as decoding a field, so the hot path does not pay it per frame.
        self._frames: dict[tuple[str, str], int] = {}
        self._crc: dict[str, int] = {"annex-a": 0, "modbus": 0}
        self.received_bytes = 0
        self.answers_sent = 0
        self.answers_lost = 0
        self.readings_published = 0

    def frame(self, cn: str, outcome: str, n: int = 1) -> None:
        key = (cn, outcome)
        self._frames[key] = self._frames.get(key, 0) + n

    def crc_seen(self, variant: str) -> None:
        self._crc[variant] += 1

    def flush(self) -> None:
        """Move the plain counts into the Prometheus counters."""
        frames, self._frames = self._frames, {}
        for (cn, outcome), n in frames.items():
            self.frames.labels(cn_label(cn), outcome).inc(n)
        for variant, n in self._crc.items():
            if n:
                self.crc.labels(variant).inc(n)
                self._crc[variant] = 0
        for counter, name in (
            (self.received, "received_bytes"),
            (self.readings, "readings_published"),
            (self.answers.labels("sent"), "answers_sent"),
            (self.answers.labels("lost"), "answers_lost"),
        ):
            n = getattr(self, name)
            if n:
                counter.inc(n)
                setattr(self, name, 0)

    def render(self) -> bytes:
        self.flush()
        return generate_latest(self.registry)
