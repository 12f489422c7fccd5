"""Import hygiene: the records are torch-free, and the runtime package never imports the training package."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_records_import_without_torch():
    code = ("import sys, talkplay.catalog, talkplay.conversation, talkplay.trie, talkplay.token_store, talkplay.tokens;"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_talkplay_never_imports_train():
    for path in sorted((REPO / "talkplay").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n == "train" or n.startswith("train.")], path
