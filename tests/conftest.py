"""Shared pytest configuration: registers the ``slow`` marker (opt-in tests, run with TALKPLAY_SLOW_TESTS=1)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs real model weights or minutes of CPU; skipped unless TALKPLAY_SLOW_TESTS=1")
