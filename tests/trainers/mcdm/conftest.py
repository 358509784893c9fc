"""MCDM tests run tiny models: one torch thread avoids oversubscription on shared CPUs (50x slower)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread_for_every_test(one_torch_thread: None) -> None:
    """Every MCDM test under the shared ``one_torch_thread`` fixture (tests/conftest.py)."""
