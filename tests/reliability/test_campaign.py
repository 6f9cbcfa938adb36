"""A short randomised fault campaign in every test run (``campaign.py`` runs the long ones): its
own single broker (the nemesis kills and stalls it, so it cannot be the session's) and two
workers, a fixed seed, each fault kind at least once (worker kill -9, broker kill -9, broker
bounce, broker SIGSTOP past every session, rebalance, hostile burst); the audit must pass."""

from __future__ import annotations

import json

import pytest

from tests.reliability.campaign import KINDS, campaign

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.timeout(900)]
MINUTES = 1.5
SEED = 2026


async def test_short_campaign_loses_nothing() -> None:
    result = await campaign(MINUTES, SEED, brokers=1, workers=2)
    print("\n" + json.dumps(result, indent=1))
    assert not result["problems"], result["problems"]
    assert {k for k, v in result["faults"].items() if v["tried"]} == set(KINDS), result["faults"]
    assert result["lost"] == result["duplicated"] == result["crashed"] == 0
