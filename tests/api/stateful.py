"""Running a schemathesis state machine against a live server, seed after seed."""

from __future__ import annotations

from typing import Any

import hypothesis
from hypothesis import settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.generation.stateful.state_machine import DEFAULT_STATE_MACHINE_SETTINGS


def run_seeded(workflow: type[Any], counts: dict[str, int], *, scenarios: int, steps: int,
               runs: int) -> None:
    """Run ``workflow`` from seed 0, 1 ... until ``counts["scenarios"]`` reaches
    ``scenarios`` or ``runs`` seeds are used. When Hypothesis replays a prefix of steps and
    the server, whose state has moved on, answers otherwise (or schemathesis' own coin to
    follow a link falls otherwise), that is no failure of the API: the next seed goes on."""
    for run in range(runs):
        if counts["scenarios"] >= scenarios:
            return
        machine = hypothesis.seed(run)(type(f"{workflow.__name__}{run}", (workflow,), {}))
        try:
            machine.run(settings=settings(DEFAULT_STATE_MACHINE_SETTINGS,
                                          max_examples=scenarios, stateful_step_count=steps,
                                          database=None))
        except FlakyStrategyDefinition:
            continue
