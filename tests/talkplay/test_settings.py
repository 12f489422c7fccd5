"""Serving settings (talkplay.settings): read once from the environment, checked, and documented in README."""

import dataclasses
import re
from pathlib import Path

import pytest

from talkplay.settings import LIBRARY_SETTINGS, ServeSettings, SettingsError, documented_variables

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_parsing():
    s = ServeSettings.from_env({})
    assert (s.concurrency, s.queue_max, s.max_turns, s.feedback, s.port, s.catalog) == \
        (16, 64, 40, True, None, Path("catalog/demo"))
    s = ServeSettings.from_env({"TALKPLAY_CONCURRENCY": "4", "TALKPLAY_FEEDBACK": "0", "TALKPLAY_PORT": "8000",
                                "TALKPLAY_FEEDBACK_PUSH_MINUTES": "2.5", "TALKPLAY_CATALOG": "catalog/mine",
                                "TALKPLAY_HOST": " ", "TALKPLAY_PRECISION": "int8"}, root=Path("/srv/app"))
    assert (s.concurrency, s.feedback, s.port, s.feedback_push_minutes, s.host, s.precision) == \
        (4, False, 8000, 2.5, None, "int8")
    assert s.catalog == Path("/srv/app/catalog/mine")  # relative to the repository, wherever the app is started
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.concurrency = 8


@pytest.mark.parametrize("name, value", [("TALKPLAY_CONCURRENCY", "0"), ("TALKPLAY_CONCURRENCY", "many"),
                                         ("TALKPLAY_QUEUE_MAX", "-3"), ("TALKPLAY_FEEDBACK_PUSH_MINUTES", "nan"),
                                         ("TALKPLAY_FEEDBACK_PUSH_MINUTES", "inf"), ("TALKPLAY_FEEDBACK", "yes"),
                                         ("TALKPLAY_PORT", "70000"), ("TALKPLAY_DEVICE", "tpu"),
                                         ("TALKPLAY_PRECISION", "int3"), ("TALKPLAY_MAX_TURNS", "1.5")])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=re.escape(name) + "='?" + re.escape(value)):
        ServeSettings.from_env({name: value})


def test_readme_configuration_table_lists_exactly_the_settings():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n\n", 2)[1]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    listed = {v for r in rows for v in re.findall(r"`(TALKPLAY_[A-Z_]+)`", r.split("|")[1])}
    assert listed == documented_variables()
    for f in dataclasses.fields(ServeSettings):  # numbers: the README states the default the code has
        if f.type in ("int", "float"):
            row = next(r for r in rows if f"`{f.metadata['env']}`" in r.split("|")[1])
            assert f"`{f.default:g}`" in row.split("|")[2], (f.name, row)
    assert len(LIBRARY_SETTINGS) == len({name for name, _, _ in LIBRARY_SETTINGS})


def test_the_app_reads_the_environment_through_the_settings_only():
    app = (REPO / "app.py").read_text(encoding="utf-8")
    chat = (REPO / "talkplay" / "chat_session.py").read_text(encoding="utf-8")
    fields = {f.metadata["env"] for f in dataclasses.fields(ServeSettings)}
    for name in fields:
        assert f'"{name}"' not in app and f'"{name}"' not in chat, name


def test_a_bad_setting_stops_the_app_before_it_serves():
    import os
    import subprocess
    import sys

    env = {**os.environ, "TALKPLAY_CONCURRENCY": "0", "TALKPLAY_PORT": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("TALKPLAY_NO_AUTOLOAD", None)
    out = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "TalkPlay cannot start: TALKPLAY_CONCURRENCY=0: expected a whole number ≥ 1" in out.stderr
    assert "Traceback" not in out.stderr
