"""The composition root: everything the stages share, built once at start and never changed.

``Wiring.build`` loads and validates the data files the settings name (grid directory, rule
catalogue, escalation policy), compiles the rule book, and takes the topics and tables it is
given: Faust's in the worker (worker/binding.py), plain fakes in tests. Stages take what they need
from it in their constructors; nothing is looked up by name at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from airgrid.config.settings import Settings
from airgrid.domain.detection.compiled import RuleBook
from airgrid.domain.detection.warnings import StationWarnings, WarningBoard
from airgrid.domain.directory import Directory
from airgrid.domain.escalation import PolicyBook, load_policy_book
from airgrid.domain.intake import Limits
from airgrid.domain.regional import RegionLogic, members
from airgrid.domain.rules import RuleCatalogue, load_rules
from airgrid.kafka.topics import TopicNames
from airgrid.metrics import Metrics
from airgrid.stages.ports import Clock, Outlet, Table


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Topics:
    """The topics the stages write to (the names are in ``TopicNames``)."""

    readings_dlq: Outlet
    alarms: Outlet
    alarms_dlq: Outlet
    feedback_rejected: Outlet
    task_events: Outlet
    task_commands: Outlet
    station_commands: Outlet
    commands_dlq: Outlet
    region_inputs: Outlet
    regions: Outlet


@dataclass(frozen=True)
class Tables:
    """The worker's changelog-backed tables (their names are ``kafka.topics.TABLES``)."""

    stations: Table  # station id -> detection state (ingest)
    tasks: Table  # task id -> task, with its pending events (owner)
    station_open: Table  # station id -> its open task's id (owner)
    regions: Table  # region id -> regional state (region stage)


@dataclass(frozen=True)
class Wiring:
    settings: Settings
    names: TopicNames
    directory: Directory
    rules: RuleCatalogue
    rulebook: RuleBook
    policies: PolicyBook
    board: WarningBoard
    warnings: StationWarnings
    limits: Limits
    metrics: Metrics
    clock: Clock
    topics: Topics
    tables: Tables
    regional: RegionLogic | None = None  # the rules' [regional] section (None: off)

    @classmethod
    def build(
        cls,
        settings: Settings,
        topics: Topics,
        tables: Tables,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> Wiring:
        directory = Directory.load(settings.grid_file)
        rules = load_rules(settings.rules_file)
        metrics = metrics or Metrics()
        metrics.initialise(directory, rules)  # every known series at 0 from the start
        board = WarningBoard()
        policies = load_policy_book(settings.policy_file)
        return cls(
            settings=settings,
            names=TopicNames.of(settings),
            directory=directory,
            rules=rules,
            rulebook=RuleBook(rules, grace_s=settings.late_grace_seconds, aqi_standard=settings.aqi_standard),
            policies=policies,
            board=board,
            warnings=StationWarnings(board, directory, clock),
            limits=Limits.of(settings),
            metrics=metrics,
            clock=clock,
            topics=topics,
            tables=tables,
            regional=region_logic(rules, directory, policies),
        )


def region_logic(rules: RuleCatalogue, directory: Directory, policies: PolicyBook) -> RegionLogic | None:
    """The regional logic of the rules' ``[regional]`` section, for the directory's regions."""
    cfg = rules.regional
    if cfg is None:
        return None
    parents = {g.id: g.parent for g in directory.grids.values() if g.level == cfg.level}
    return RegionLogic(cfg, members(directory, cfg.level), policies.regional.dispatch, parents)
