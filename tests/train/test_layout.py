"""The house's layout: train/ in stage packages, no module shadowing a library, modules run only with python -m,
and every command the README gives answers --help."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("catalog", "tokens", "data", "training", "evaluation", "checks")  # in the order the data flows


def test_train_top_level_holds_only_the_stage_packages():
    entries = {p.name for p in (REPO / "train").iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "README.md", *STAGES}
    readme = (REPO / "train" / "README.md").read_text(encoding="utf-8")
    positions = [readme.index(f"train.{s}") for s in STAGES]
    assert positions == sorted(positions), "train/README.md lists the stages in the order the data flows"
    for stage in STAGES:
        doc = (REPO / "train" / stage / "__init__.py").read_text(encoding="utf-8")
        assert doc.startswith('"""Stage'), stage


def test_no_module_shadows_a_library():
    """Running a file puts its folder first on sys.path: a module named like a library would replace it."""
    import importlib.util

    for package in ("talkplay", "train"):
        for path in (REPO / package).rglob("*.py"):
            name = path.stem
            if name == "__init__" or name == "__main__":
                continue
            assert name not in sys.stdlib_module_names, path
            spec = importlib.util.find_spec(name)
            origin = str(spec.origin) if spec and spec.origin else ""
            assert not spec or str(REPO) in origin or "site-packages" not in origin, f"{path} shadows {origin}"


def test_train_modules_run_only_as_modules():
    files = sorted(p for p in (REPO / "train").rglob("*.py") if p.name != "__init__.py")
    assert len(files) > 40
    for path in files:
        out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=REPO / "train",
                             timeout=60)
        assert out.returncode == 1 and "use python -m" in out.stderr and "Traceback" not in out.stderr, path


def _readme_commands() -> list[str]:
    """Every `python -m <module>` the README and train/README.md give (module names only, de-duplicated)."""
    text = (REPO / "README.md").read_text(encoding="utf-8") + (REPO / "train" / "README.md").read_text(
        encoding="utf-8")
    found = re.findall(r"python -m ((?:train|talkplay)(?:\.[a-z_]+)*)(?: ([a-z]+)\b)?", text)
    return sorted({m if m != "talkplay" or not sub else f"{m} {sub}" for m, sub in found})


@pytest.mark.parametrize("command", _readme_commands())
def test_every_readme_command_answers_help(command):
    out = subprocess.run([sys.executable, "-m", *command.split(), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "usage" in out.stdout.lower(), (command, out.stderr[-1500:])
