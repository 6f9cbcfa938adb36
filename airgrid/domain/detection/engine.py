"""The rule engine: fold one reading into a station's state, in event time, and return alarm events.

Pure: ``evaluate(state, reading, rules, now) -> (state, events, outcome)`` and
``check_silence(state, station_id, rules, now) -> events``; ``now`` is the injected wall clock
(it stamps ``emitted_at`` and measures silence by arrival), every window is event time.

Hours: ``observed_at`` is the END of a reading's interval, so a reading ending exactly on the hour
belongs to the hour before. An hour closes when one pollutant has a full hour of data, or when a
reading of a later hour arrives; it is evaluated then. Late readings whose hour is still within
``grace_s`` of the station's newest reading (the hour's end + grace >= newest observed_at) are
folded into it and the hour is evaluated again (it may open or update an episode, never clear
one: clearing follows the newest hours). Older ones are ``late``: the caller records them.
"""

from __future__ import annotations

import math
from typing import Literal

from airgrid.domain.detection.compiled import Rule, RuleSet, gb3095_index
from airgrid.domain.detection.episodes import Emitter
from airgrid.domain.detection.hour import GRID, HOUR, HourView, aqi_level, china_day, day_hours, mean
from airgrid.domain.detection.state import RING_HOURS, Bucket, StationState
from airgrid.models.alarms import AlarmEvent
from airgrid.models.readings import Reading

Outcome = Literal["accepted", "duplicate", "late_folded", "late"]


def hour_number(ts: float) -> int:
    """Hour number (``epoch // 3600``) of the clock hour an interval ending at ``ts`` belongs to."""
    return math.ceil(ts / HOUR) - 1


def evaluate(
    state: StationState,
    reading: Reading,
    rules: RuleSet,
    now_ts: float,
    closed: list[tuple[int, dict[str, float]]] | None = None,
) -> tuple[StationState, list[AlarmEvent], Outcome]:
    """Fold one validated reading into ``state`` (mutated and returned). ``closed``: a list to
    which each hour closed for the first time is appended, (hour, its valid hourly values): the
    input of the regional background."""
    ts = reading.observed_at.timestamp()
    h = math.ceil(ts / HOUR) - 1
    out = Emitter(state, reading.station_id, rules, now_ts, ts, reading.wind)
    out.closed = closed
    cur = state.current
    if cur is not None and h <= cur:
        bucket = state.buckets.get(h)
        if bucket is None:
            last = state.last_obs or ts
            if h == cur or (h + 1) * HOUR + rules.grace_s < last:
                return state, out.events, "late"
            bucket = state.buckets[h] = Bucket(closed=True)  # an empty hour, now within grace
        if ts in bucket.seen:
            return state, out.events, "duplicate"
        usable = _per_reading(out, reading, in_order=state.last_obs is None or ts >= state.last_obs)
        full = _add(bucket, reading, usable, ts)
        if bucket.closed:
            _close(out, h, revision=True)
            outcome: Outcome = "late_folded"
        else:
            outcome = "accepted"
            if full:
                _close(out, h)
    else:
        for old in sorted(state.buckets):
            if not state.buckets[old].closed:
                _close(out, old)
        bucket = state.buckets[h] = Bucket()
        state.current = h
        usable = _per_reading(out, reading, in_order=True)
        if _add(bucket, reading, usable, ts):
            _close(out, h)
        outcome = "accepted"
    if state.last_obs is None or ts > state.last_obs:
        state.last_obs = ts
    state.last_arrival = now_ts
    for rule in rules.silent:
        if rule.id in state.episodes:
            out.step(rule, rule.id, False, True, (ts - (state.last_obs or ts)), float(rule.after_s))
    _prune(state, rules.grace_s)
    return state, out.events, outcome


def check_silence(state: StationState, station_id: str, rules: RuleSet, now_ts: float) -> list[AlarmEvent]:
    """Open a silence episode when nothing was observed nor arrived for ``after_s`` seconds.

    Both clocks must agree, so a replay of old readings (recent arrival) is not silent, and a
    station whose clock runs ahead is judged by what actually arrives."""
    if state.last_obs is None or not rules.silent:
        return []
    arrival = state.last_arrival if state.last_arrival is not None else state.last_obs
    out = Emitter(state, station_id, rules, now_ts, None)
    for rule in rules.silent:
        quiet = now_ts - state.last_obs
        if rule.id not in state.episodes and quiet >= rule.after_s and now_ts - arrival >= rule.arrival_s:
            out.window = (state.last_obs, now_ts)
            out.step(
                rule, rule.id, True, False, quiet, float(rule.after_s), opened=state.last_obs + rule.after_s
            )
    return out.events


def _add(bucket: Bucket, reading: Reading, usable: dict[str, float], ts: float) -> bool:
    """Add a reading to its hour; True when one pollutant now has a full hour of data."""
    bucket.seen.append(ts)
    w = float(reading.interval_s)
    sums, secs = bucket.sums, bucket.secs
    full = False
    for p, v in usable.items():
        if p in secs:
            sums[p] += v * w
            covered = secs[p] = secs[p] + w
        else:
            sums[p] = v * w
            covered = secs[p] = w
        if covered >= HOUR:
            full = True
    return full


def _per_reading(out: Emitter, reading: Reading, in_order: bool) -> dict[str, float]:
    """Data-quality rules on one reading; return the values fit for averages."""
    values: dict[str, float] = reading.valid_values()  # type: ignore[assignment]
    if not out.rules.screens_negative and values and min(values.values()) < 0:
        values = {p: v for p, v in values.items() if v >= 0}  # never in an average, rule or not
    if not out.rules.per_reading:
        return values
    state = out.state
    usable: dict[str, float] = values
    ts = out.reading_ts or 0.0
    out.window = (ts - reading.interval_s, ts)
    for rule in out.rules.per_reading:
        if rule.kind == "impossible":
            bad = _impossible(rule, values)
            runs = state.bad
            # the common case, nothing wrong, nothing counted and nothing open, costs nothing
            if bad or runs or state.episodes:
                for p in values:
                    key = rule.keys[p]
                    if p in bad:
                        count = runs[p] = runs.get(p, 0) + 1
                        if count >= rule.readings or key in state.episodes:  # persistent, or still open
                            out.step(rule, key, True, False, values[p], bad[p], pollutant=p)
                    else:
                        runs.pop(p, None)
                        if key in state.episodes:
                            out.step(rule, key, False, True, values[p], None, pollutant=p)
            if bad:
                usable = {p: v for p, v in usable.items() if p not in bad}
                if "pm25" in bad and "pm10" in usable and bad["pm25"] < values["pm25"]:
                    del usable["pm10"]  # PM2.5 > PM10: one of the two is wrong, trust neither
        elif in_order:  # flatline: runs only make sense in arrival order
            flat = state.flat
            episodes = state.episodes
            for q in rule.pollutants:
                if q not in values:
                    continue
                v = values[q]
                run = flat.get(q)
                if run is not None and run[0] == v:
                    run[1] += 1
                    n = run[1]
                else:
                    flat[q] = [v, 1]
                    n = 1
                    if not episodes:  # a new value, nothing open: nothing to report
                        continue
                cond = n >= rule.readings and v > rule.min_value
                key = rule.keys[q]
                if cond or key in episodes:
                    out.step(rule, key, cond, n == 1, v, float(rule.readings), pollutant=q)
    return usable


def _impossible(rule: Rule, values: dict[str, float]) -> dict[str, float]:
    """Pollutant -> the bound it broke."""
    bad: dict[str, float] = {}
    ranges = rule.ranges
    for p, v in values.items():
        if v < 0:
            bad[p] = 0.0
        elif p in ranges and v >= ranges[p]:
            bad[p] = ranges[p]
    pm25, pm10 = values.get("pm25"), values.get("pm10")
    if pm25 is not None and pm10 is not None and "pm25" not in bad and "pm10" not in bad:
        bound = pm10 * rule.ratio + rule.abs_tol
        if pm25 > bound:
            bad["pm25"] = bound
    return bad


def _close(out: Emitter, h: int, revision: bool = False) -> None:
    """Build hour ``h``'s averages and evaluate the hourly (and, at a day's end, daily) rules."""
    state, rs = out.state, out.rules
    bucket = state.buckets[h]
    bucket.closed = True
    mc = rs.min_coverage_s
    vals = {p: round(bucket.sums[p] / s * GRID) / GRID for p, s in bucket.secs.items() if s >= mc}  # settle()
    ring = state.ring
    if vals:
        ring[h] = vals
        if out.closed is not None and not revision:
            out.closed.append((h, dict(vals)))
    else:
        ring.pop(h, None)
    if not revision:
        ring.pop(h - RING_HOURS, None)  # the usual case: hours arrive in order
        if len(ring) > RING_HOURS + 8:  # after gaps: an occasional full sweep keeps it bounded
            for old in [k for k in ring if k <= h - RING_HOURS]:
                del ring[old]
    if revision:
        state.windows.clear()  # a past hour changed: the running sums no longer hold
    view = HourView(ring, h, rs, state.windows)
    out.view = view
    out.window = (h * HOUR, (h + 1) * HOUR)
    idx = gb3095_index(h * HOUR)  # GB 3095 version of this hour
    episodes = state.episodes
    # Each branch first rules out, cheaply, the common case: condition false and no episode open.
    for rule in rs.hourly:
        kind = rule.kind
        thr: float | None
        if kind == "exceedance":
            p = rule.pollutant
            v = vals.get(p) if rule.period == "1h" else view.avg(p, 8 if rule.period == "8h" else 24)
            if v is None:
                continue
            thr = rule.thr[idx]
            if v > thr or rule.id in episodes:
                out.step(rule, rule.id, v > thr, v <= rule.clr[idx], v, thr, revision=revision)
        elif kind == "sustained":
            p = rule.pollutant
            v = vals.get(p)
            if v is None:
                continue
            thr = rule.thr[idx]
            if v <= thr and rule.id not in episodes:
                continue
            cond = v > thr and all(ring.get(h - k, {}).get(p, -1.0) > thr for k in range(1, rule.hours))
            out.step(rule, rule.id, cond, v <= rule.clr[idx], v, thr, revision=revision)
        elif kind == "aqi_category":
            if rule.id not in episodes and not view.may_reach(rule.min_level):
                continue
            result = view.aqi()
            if result is None or result.aqi is None:
                continue
            level = aqi_level(result)
            cond = level >= rule.min_level
            out.step(rule, rule.id, cond, not cond, float(result.aqi), None, revision=revision)
        elif kind == "sudden_rise":
            p = rule.pollutant
            v = vals.get(p)
            if v is None or (v < rule.min_rise and rule.id not in episodes):  # v >= base + min_rise
                continue
            base = view.baseline(p, rule.baseline_hours, rule.min_baseline)
            if base is None:
                continue
            thr = max(base * rule.factor, base + rule.min_rise)
            out.step(rule, rule.id, v >= thr, v < base * rule.clear_factor, v, thr, revision=revision)
    out.view = None  # a day's events carry the daily AQI, not the hour's
    if not revision and rs.daily:
        _maybe_day(out, h)


def _maybe_day(out: Emitter, h: int) -> None:
    """Evaluate the calendar-day rules once per China day: at its last hour, or at the first hour
    closed after it when that last hour is missing."""
    state = out.state
    day = china_day(h)
    target = day if (h + 8) % 24 == 23 else day - 1
    if state.day_done is not None and state.day_done >= target:
        return
    state.day_done = target
    hours = day_hours(target)
    out.window = (hours[0] * HOUR, (hours[-1] + 1) * HOUR)
    out.day = target
    ds = float(hours[0] * HOUR)
    for rule in out.rules.daily:
        avg = mean(state.ring, hours, rule.pollutant, out.rules.min_day_hours)
        if avg is None:
            continue
        thr = rule.threshold(ds)
        out.step(rule, rule.id, avg > thr, avg <= rule.clear_below(ds), avg, thr)
    out.day = None


def _prune(state: StationState, grace_s: float) -> None:
    """Drop hour buckets that no late reading may reach any more (keeps the state small)."""
    last = state.last_obs
    if last is None or len(state.buckets) == 1:
        return
    for h in [h for h in state.buckets if h != state.current and (h + 1) * HOUR + grace_s < last]:
        del state.buckets[h]


__all__ = ["Outcome", "check_silence", "evaluate", "hour_number"]
