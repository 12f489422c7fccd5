"""Import hygiene: the records are torch-free, and the runtime package never imports the training package."""

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_records_import_without_torch():
    code = ("import sys, talkplay.catalog, talkplay.conversation, talkplay.trie, talkplay.token_store, talkplay.tokens, talkplay.bundle;"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_talkplay_and_the_app_never_import_train():
    for path in [*sorted((REPO / "talkplay").rglob("*.py")), REPO / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n == "train" or n.startswith("train.")], path


# The runtime's tests (tests/talkplay/): they must run where only talkplay/ is installed (a Space, a laptop serving
# a bundle). The training side's are in tests/train/.
RUNTIME_TESTS = tuple(sorted(p.stem for p in (REPO / "tests" / "talkplay").glob("test_*.py")))
RUNTIME_HELPERS = ("conftest", "worlds", "tiny_lm")

_BLOCK_TRAIN = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "train" or name.startswith("train."):
            raise ImportError(f"{name}: the training package is absent here")
sys.meta_path.insert(0, Block())
"""


def test_runtime_tests_need_no_training_code():
    allowed_tests = {"tests", "tests.talkplay", *(f"tests.{n}" for n in RUNTIME_HELPERS),
                     *(f"tests.talkplay.{n}" for n in RUNTIME_TESTS)}
    assert len(RUNTIME_TESTS) > 15 and "test_recommender" in RUNTIME_TESTS
    paths = [REPO / "tests" / f"{n}.py" for n in RUNTIME_HELPERS] + \
        [REPO / "tests" / "talkplay" / f"{n}.py" for n in RUNTIME_TESTS]
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # function-level imports too
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.ImportFrom) and node.module in ("tests", "tests.talkplay"):
                names = [f"{node.module}.{a.name}" for a in node.names]
            bad = [n for n in names if n == "train" or n.startswith("train.")
                   or (n.startswith("tests") and n not in allowed_tests)]  # a training-side test may need train
            assert not bad, f"{path.relative_to(REPO)} imports {bad}"
    imports = "".join(f"import tests.talkplay.{name}\n" for name in RUNTIME_TESTS
                      if name not in ("test_app", "test_imports"))
    out = subprocess.run([sys.executable, "-c", _BLOCK_TRAIN + imports], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TALKPLAY_NO_AUTOLOAD": "1"})
    assert out.returncode == 0, out.stderr[-2000:]


def _import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports, at any level (function-level imports too)."""
    modules = {}
    for package in ("talkplay", "train"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            deps.update(f for f in found if f in modules and f != name)
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph, state, cycles = _import_graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
    assert "train.data.playlists" in graph and "talkplay.recommender" in graph  # the walk saw both packages
