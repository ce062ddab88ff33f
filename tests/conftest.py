"""Shared pytest configuration for the fastad test suite.

Hypothesis profiles:
  ci   (default) -- modest number of examples so the whole suite stays fast
  long           -- max_examples=10000, for soak runs
Select with the environment variable FASTAD_HYPOTHESIS_PROFILE=long.
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# make ``import reference`` work however pytest is invoked
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=10000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("FASTAD_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def counter():
    """A mutable call counter: ``counter.n`` is incremented by ``counter.tick()``."""

    class Counter:
        n = 0

        def tick(self):
            self.n += 1

    return Counter()
