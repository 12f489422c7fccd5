"""Shared pytest configuration: the test markers, and the runtime tests' ``world`` (tests/worlds.py).

- ``slow``: needs real model weights or minutes of CPU beyond what CI affords; skipped unless TALKPLAY_SLOW_TESTS=1.
- ``integration``: starts the real app in a fresh environment (minutes); runs in CI (``bash setup.sh test``), and
  ``pytest -m "not integration"`` leaves it out of a quick local loop.
"""

import os

import pytest

from tests.worlds import build_runtime_world


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs real model weights or minutes of CPU; skipped unless TALKPLAY_SLOW_TESTS=1")
    config.addinivalue_line("markers", "integration: starts the real app in a fresh environment; runs in CI")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TALKPLAY_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set TALKPLAY_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tokenizer, tiny catalog and token store, built without the training package (tests/worlds.py)."""
    return build_runtime_world(tmp_path_factory.mktemp("world"))
