"""Shared pytest configuration: the test markers.

- ``slow``: needs real model weights or minutes of CPU beyond what CI affords; skipped unless TALKPLAY_SLOW_TESTS=1.
- ``integration``: starts the real app in a fresh environment (minutes); runs in CI (``bash setup.sh test``), and
  ``pytest -m "not integration"`` leaves it out of a quick local loop.
"""

import os

import pytest


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
