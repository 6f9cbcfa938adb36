"""Hostile input at volume: a seeded mutator that makes readings, feedback and HJ 212 frames that
airgrid must refuse, each with the refusal it should get, fast enough for 100,000 per run.

Every generated message is hostile by construction, and the pure validators decide what the
worker must answer (``parse_reading`` for readings, ``parse_feedback`` and the directory's rights
for feedback, the gateway's ``Framer`` and segment checks for frames): a mutant they would accept
(a byte flip that lands in a digit of a value, ``"600"`` where an int is wanted, which pydantic
takes) is not hostile and is drawn again; those draws are counted (``Stats.redrawn``). The only
accepted hostile messages are replays: exact copies of clean messages sent earlier under the same
key, which the worker must recognise (``duplicate``) or refuse as ``too_late``.

The HJ 212 frames are ``hostile_frames.py``'s, drawn with the same ``Mutator``.
``tests/reliability/test_hostile_volume.py`` sends them to the real worker and gateway;
``tests/unit/test_hostile_generator.py`` holds the generator to its word with hypothesis.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from airgrid.config.settings import DATA_DIR
from airgrid.domain.directory import Directory
from airgrid.domain.intake import Limits, Rejection, parse_feedback, parse_reading
from airgrid.domain.tasks import station_of_task

DIRECTORY = Directory.load(DATA_DIR / "grids.json")
SHANGHAI = ZoneInfo("Asia/Shanghai")
LIMITS = Limits(max_bytes=65536, max_future=timedelta(seconds=300), max_age=timedelta(days=400))
REPLAY = "replay"  # the class of exact copies of clean messages: the only ones that may be accepted

READING_CLASSES = (
    "random_bytes",
    "byte_flip",
    "truncated",
    "field_deleted",
    "type_swap",
    "wrong_type",
    "nan_infinity",
    "bad_value",
    "extreme_time",
    "unknown_station",
    "schema_version",
    "extra_field",
    "huge",
    "deep",
    "wrong_key",
    "huge_key",
    REPLAY,
)
FEEDBACK_CLASSES = (
    "random_bytes",
    "byte_flip",
    "truncated",
    "field_deleted",
    "type_swap",
    "wrong_type",
    "nan_infinity",
    "huge",
    "deep",
    "forged_task_id",
    "unknown_task",
    "unknown_worker",
    "wrong_worker",
    "not_reviewer",
    "huge_key",
    REPLAY,
)
JUNK = [
    None,
    True,
    False,
    0,
    -1,
    2**64 - 1,
    -(2**63),
    1e308,
    -1e-308,
    "",
    "x",
    "null",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "\u0000",
    "\ud7ff\ue000",
    "ST001\u202e",
    "💨" * 8,
    [],
    [1, 2, 3],
    {},
    {"pm25": 1.0},
    [[[[]]]],
]
EXTREME_TIMES = [
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+14:00",
    "1900-01-01T00:00:00Z",
    "1970-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999+00:00",
    "3026-11-28T10:00:00+08:00",
    "2026-11-28T10:00:00",  # naive: no zone
    "2026-13-45T25:61:61+08:00",
    "2026-02-30T10:00:00+08:00",
    "2026-11-28T10:00:00+25:00",
    "not a time",
    "",
    "T",
    "2026-11-28 10:00",
    "+275760-09-13T00:00:00Z",
]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile Kafka message: its class, key, value, and the refusal code the validators give
    (``None`` for a replay, whose outcome is the worker's: duplicate, or too_late)."""

    kind: str
    key: bytes | None
    value: bytes
    code: str | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Stats:
    by_kind: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    redrawn: int = 0  # mutants the validators would have accepted, drawn again


def station_reading(station: str, at: datetime, pm25: float, pm10: float | None = None) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "station_id": station,
        "observed_at": at.isoformat(),
        "interval_s": 600,
        "values": {"pm25": pm25, "pm10": pm10 if pm10 is not None else round(pm25 * 1.6, 1)},
    }


class Mutator:
    """Seeded: the same seed and clean input give the same hostile messages, in the same order."""

    def __init__(self, seed: int, now: datetime, limits: Limits = LIMITS) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.limits = limits
        self.stats = Stats()
        self.known = DIRECTORY.stations.__contains__

    # --- shared mutations ------------------------------------------------------------------------

    def _flip(self, raw: bytes) -> bytes:
        rng = self.rng
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= rng.randint(1, 255)
        return bytes(b)

    def _deep(self) -> bytes:
        rng = self.rng
        depth = rng.choice([64, 600, 1025, 5000] * 4 + [20000])
        open_, close = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        inner = open_ * depth + b"1" + close * depth
        if rng.random() < 0.5:
            return inner
        return b'{"schema_version":1,"station_id":' + inner + b"}"

    def _huge(self, doc: dict[str, Any]) -> bytes:
        rng = self.rng
        over = self.limits.max_bytes
        choice = rng.randrange(3)
        if choice == 0:  # over the limit: refused unparsed
            return orjson.dumps({**doc, "comment": "x" * (over + rng.randint(1, 30_000))})
        if choice == 1:  # under the limit, but thousands of fields
            return orjson.dumps(
                {**doc, "values": {f"p{i}": float(i) for i in range(rng.randint(1000, 3000))}}
            )
        return orjson.dumps({**doc, "comment": "é" * rng.randint(10_000, 30_000)})

    def _swap(self, doc: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
        rng = self.rng
        name = rng.choice(list(fields))
        out = dict(doc)
        if "." in name:
            outer, inner = name.split(".", 1)
            sub = dict(out.get(outer) or {})
            sub[inner] = rng.choice(JUNK)
            out[outer] = sub
        else:
            out[name] = rng.choice(JUNK)
        return out

    def _wrong_type(self) -> bytes:
        rng = self.rng
        return rng.choice(
            [
                b"[]",
                b"null",
                b"42",
                b'"text"',
                b"true",
                b"{}",
                b"{not json}",
                b"\x00" * 10,
                b"",
                b" ",
                b"[{}]",
            ]
        )

    # --- readings ---------------------------------------------------------------------------------

    def reading_code(self, raw: bytes, key: bytes | None) -> str | None:
        """The worker's refusal: the intake's, else ``wrong_key`` for a key other than the
        station's; None when the worker would take the reading."""
        r = parse_reading(raw, self.now, self.limits, self.known)
        if isinstance(r, Rejection):
            return r.code
        return None if key == r.station_id.encode() else "wrong_key"

    def readings(self, n: int, clean: Sequence[tuple[bytes, bytes]], replays: float = 0.03) -> list[Hostile]:
        """``n`` hostile readings mutated from ``clean`` (key, value) pairs; replays copy one of
        them (the caller sends a replay after its original, with the original's key)."""
        out: list[Hostile] = []
        kinds, weights = _weighted(READING_CLASSES)
        for kind in self.rng.choices(kinds, weights, k=n):
            if self.rng.random() < replays:
                key, value = self.rng.choice(clean)
                out.append(Hostile(REPLAY, key, value, None))
                self.stats.by_kind["reading:" + REPLAY] += 1
                continue
            out.append(self._reading(kind, clean))
        return out

    def _reading(self, kind: str, clean: Sequence[tuple[bytes, bytes]]) -> Hostile:
        rng = self.rng
        for _ in range(50):
            key, base_raw = rng.choice(clean)
            base = orjson.loads(base_raw)
            raw = self._reading_bytes(kind, base, base_raw)
            if kind == "huge_key":  # a key of up to most of what the broker takes
                k = rng.randbytes(rng.randint(10_000, 900_000))
            elif kind == "wrong_key":  # a valid reading that would change the state, on a wrong key
                k: bytes | None = rng.choice(
                    [None, b"", b"ST999", b"st" + key[2:], key + b" ", rng.randbytes(5)]
                )
                k = (
                    rng.choice([k, next(other for other, _ in clean if other != key)])
                    if len(clean) > 1
                    else k
                )
            else:
                k = rng.choice([key, key, None, b"", rng.randbytes(8), b"ST999"])
            code = self.reading_code(raw, k)
            if code is not None:
                self.stats.by_kind["reading:" + kind] += 1
                self.stats.by_code["reading:" + code] += 1
                headers: tuple[tuple[str, bytes], ...] = ()
                if rng.random() < 0.05:
                    headers = ((rng.choice(["x", "", "\u00ff", "faust"]), rng.randbytes(rng.randint(0, 20))),)
                return Hostile(kind, k, raw, code, headers)
            self.stats.redrawn += 1
        raise AssertionError(f"no hostile {kind} reading in 50 draws")

    def _reading_bytes(self, kind: str, base: dict[str, Any], base_raw: bytes) -> bytes:
        rng = self.rng
        if kind == "random_bytes":
            return rng.randbytes(rng.randint(1, 400))
        if kind == "byte_flip":
            return self._flip(base_raw)
        if kind == "truncated":
            return base_raw[: rng.randrange(1, len(base_raw))]
        if kind == "field_deleted":
            gone = rng.sample(["station_id", "observed_at", "values"], rng.randint(1, 3))
            return orjson.dumps({k: v for k, v in base.items() if k not in gone})
        if kind == "type_swap":
            fields = ["station_id", "observed_at", "values", "interval_s", "values.pm25", "values.pm10"]
            return orjson.dumps(self._swap(base, [*fields, "flags", "wind", "units"]))
        if kind == "wrong_type":
            return self._wrong_type()
        if kind == "nan_infinity":
            lit = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e999", b"nan", b"inf"])
            return base_raw.replace(b'"pm25":', b'"pm25":' + lit + b',"x":', 1)
        if kind == "bad_value":
            bad: dict[str, Any] = rng.choice(
                [
                    {"values": {}},
                    {"values": {"radon": 3.0}},
                    {"values": {"pm25": "high"}},
                    {"interval_s": rng.choice([0, -60, 86401, 10**12])},
                    {"wind": {"speed": -1, "direction": 90}},
                    {"wind": {"speed": 3, "direction": 360}},
                    {"flags": {"pm25": "Z"}},
                    {"units": {"pm25": "ppm"}},
                    {"units": {"co": "ug/m3"}},
                ]
            )
            return orjson.dumps({**base, **bad})
        if kind == "extreme_time":
            return orjson.dumps({**base, "observed_at": rng.choice(EXTREME_TIMES)})
        if kind == "unknown_station":
            station = rng.choice(["ST999", "ST000", "st001", "ST001 ", "x" * 64, "ST-UNKNOWN", "00"])
            return orjson.dumps({**base, "station_id": station})
        if kind == "schema_version":
            return orjson.dumps({**base, "schema_version": rng.choice([0, 2, 99, -1, "1", 1.0, True, None])})
        if kind == "extra_field":
            name = rng.choice(["extra", "station", "_id", "values2", "__proto__", ""])
            return orjson.dumps({**base, name: rng.choice(JUNK)})
        if kind == "huge":
            return self._huge(base)
        if kind == "deep":
            return self._deep()
        if kind == "huge_key":  # the value valid, or not
            return rng.choice([base_raw, b"x", b"{}"])
        if kind == "wrong_key":  # five minutes later, heavily polluted: were it taken, alarms change
            at = datetime.fromisoformat(base["observed_at"]) + timedelta(minutes=5)
            return orjson.dumps(
                {**base, "observed_at": at.isoformat(), "values": {"pm25": 400.0, "pm10": 600.0}}
            )
        raise ValueError(kind)

    # --- feedback ---------------------------------------------------------------------------------

    def feedback_code(self, raw: bytes, tasks: dict[str, tuple[str, str, str]]) -> str | None:
        """The refusal the worker must give, knowing the tasks (task id -> lineage l3, l2, l1)
        and the directory; None if it could be applied."""
        fb = parse_feedback(raw, self.limits.max_bytes)
        if isinstance(fb, Rejection):
            return fb.code
        station = station_of_task(fb.task_id)
        if station is None or station not in DIRECTORY.stations:
            return "unknown_task"
        chain = tasks.get(fb.task_id)
        if chain is None:
            return "unknown_task"
        worker = DIRECTORY.workers.get(fb.worker_id)
        if worker is None:
            return "unknown_worker"
        if worker.grid not in chain:
            return "wrong_grid"
        if fb.action in ("approve", "reject", "close") and worker.grid == chain[0]:
            return "not_reviewer"
        return None  # it may be applied (or be an illegal transition, depending on the task)

    def feedback(
        self,
        n: int,
        clean: Sequence[tuple[bytes, bytes]],
        tasks: dict[str, tuple[str, str, str]],
        replays: float = 0.03,
    ) -> list[Hostile]:
        """``n`` hostile feedback messages; ``clean`` the clean feedback (key, value) to mutate
        and replay; ``tasks`` the tasks that exist (id -> grid chain)."""
        out: list[Hostile] = []
        kinds, weights = _weighted(FEEDBACK_CLASSES)
        for kind in self.rng.choices(kinds, weights, k=n):
            if self.rng.random() < replays:
                key, value = self.rng.choice(clean)
                out.append(Hostile(REPLAY, key, value, None))
                self.stats.by_kind["feedback:" + REPLAY] += 1
                continue
            out.append(self._feedback(kind, clean, tasks))
        return out

    def _feedback(self, kind: str, clean: Sequence[tuple[bytes, bytes]], tasks: dict[str, Any]) -> Hostile:
        rng = self.rng
        for _ in range(50):
            key, base_raw = rng.choice(clean)
            base = orjson.loads(base_raw)
            base = {**base, "feedback_id": f"fb-hostile-{rng.getrandbits(48):x}"}
            raw = self._feedback_bytes(kind, base, orjson.dumps(base), tasks)
            code = self.feedback_code(raw, tasks)
            if code is not None:
                self.stats.by_kind["feedback:" + kind] += 1
                self.stats.by_code["feedback:" + code] += 1
                if kind == "huge_key":
                    return Hostile(kind, rng.randbytes(rng.randint(10_000, 900_000)), raw, code)
                return Hostile(kind, rng.choice([key, None, rng.randbytes(6)]), raw, code)
            self.stats.redrawn += 1
        raise AssertionError(f"no hostile {kind} feedback in 50 draws")

    def _feedback_bytes(
        self, kind: str, base: dict[str, Any], base_raw: bytes, tasks: dict[str, Any]
    ) -> bytes:
        rng = self.rng
        if kind == "random_bytes":
            return rng.randbytes(rng.randint(1, 300))
        if kind == "byte_flip":
            return self._flip(base_raw)
        if kind == "truncated":
            return base_raw[: rng.randrange(1, len(base_raw))]
        if kind == "field_deleted":
            gone = rng.sample(["feedback_id", "task_id", "worker_id", "action", "at"], rng.randint(1, 3))
            return orjson.dumps({k: v for k, v in base.items() if k not in gone})
        if kind == "type_swap":
            fields = ["feedback_id", "task_id", "worker_id", "action", "at", "findings", "comment"]
            return orjson.dumps(self._swap(base, fields))
        if kind == "wrong_type":
            return self._wrong_type()
        if kind == "nan_infinity":
            lit = rng.choice([b"NaN", b"Infinity", b"-1e999"])
            findings = b'"findings":{"source_found":true,"sources_inspected":' + lit + b"}"
            return base_raw[:-1] + b"," + findings + b"}"
        if kind == "huge":
            return self._huge(base)
        if kind == "deep":
            return self._deep()
        if kind == "huge_key":
            return rng.choice([b"x", b"{}", base_raw[:-1]])
        task_ids = sorted(tasks)
        if kind == "forged_task_id":
            task = rng.choice(
                [
                    "T-",
                    "T-ST001-",
                    "X-ST001-202611280000",
                    "T-ST001-20261128abcd",
                    "T-ST999-202611280000",
                    "T-ST001-190001010000",
                    "T-" + "9" * 80,
                    "T-ST001-2026/11/28",
                ]
            )
            return orjson.dumps({**base, "task_id": task})
        task_id = rng.choice(task_ids)
        l3, l2, l1 = tasks[task_id]
        if kind == "unknown_task":  # a well-formed id of a known station, never dispatched
            station = station_of_task(task_id) or "ST001"
            stamp = rng.choice(["190001010000", "209912312359", "202611280001"])
            return orjson.dumps({**base, "task_id": f"T-{station}-{stamp}"})
        if kind == "unknown_worker":
            worker = rng.choice([f"W-{l3}-99", "W-NOBODY", "admin", "W-L1-01 ", f"{l3}", "root@localhost"])
            return orjson.dumps({**base, "task_id": task_id, "worker_id": worker})
        if kind == "wrong_worker":  # a real worker of a grid outside the task's chain, any action
            worker = rng.choice([w for w, x in DIRECTORY.workers.items() if x.grid not in (l3, l2, l1)])
            action = rng.choice(["acknowledge", "on_site", "submit", "approve", "reject", "close"])
            # and, as an attacker would, a grid id of the task's own grid in the message
            extra = {"at": rng.choice(EXTREME_TIMES[:7])} if rng.random() < 0.3 else {}
            return orjson.dumps({**base, "task_id": task_id, "worker_id": worker, "action": action, **extra})
        if kind == "not_reviewer":  # the task's own level-3 worker doing a reviewer's action
            worker = rng.choice([w for w, x in DIRECTORY.workers.items() if x.grid == l3])
            return orjson.dumps(
                {**base, "task_id": task_id, "worker_id": worker, "action": rng.choice(["approve", "close"])}
            )
        raise ValueError(kind)


# relative weights of the classes: huge and deep messages are costly to send (and to refuse), so
# fewer of them; a replay is drawn apart (``replays``)
RARE = {"huge": 0.05, "deep": 0.3, "huge_key": 0.01}


def _weighted(classes: Sequence[str]) -> tuple[list[str], list[float]]:
    kinds = [k for k in classes if k != REPLAY]
    return kinds, [RARE.get(k, 1.0) for k in kinds]


def interleave(
    rng: random.Random,
    clean: Sequence[tuple[bytes, bytes]],
    hostile: Sequence[Hostile],
    originals_first: Callable[[Hostile], bool] = lambda h: h.kind == REPLAY,
) -> list[tuple[bool, Hostile | tuple[bytes, bytes]]]:
    """``clean`` in order with ``hostile`` spread among them at random; a replay goes after the
    clean message it copies. (is_hostile, message) pairs."""
    slots: list[list[Hostile]] = [[] for _ in range(len(clean) + 1)]
    position = {v: i for i, (_, v) in enumerate(clean)}
    for h in hostile:
        first = position.get(h.value, -1) + 1 if originals_first(h) else 0
        slots[rng.randint(first, len(clean))].append(h)
    out: list[tuple[bool, Hostile | tuple[bytes, bytes]]] = [(True, h) for h in slots[0]]
    for i, c in enumerate(clean):
        out.append((False, c))
        out += [(True, h) for h in slots[i + 1]]
    return out
