"""Only kagglelib/run/ spells a run folder's file names: every other module gets them from a Run or a stage."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT
from kagglelib.run import names

PKG = ROOT / "kagglelib"
# The run folder's file-name constants (kagglelib.run.names, re-exported by run.layout and run.store).
NAME_CONSTANTS = {"CONFIG", "METRICS", "RUN_INFO", "MANIFEST", "OOF", "VALID_PREDS", "MODEL_DIR", "LOSS_CURVE",
                  "PREDICTOR", "TEST_PREDS", "SUBMISSION", "HELDOUT_FILES"}
# Names only a run folder has. ("config.json" is also a Hugging Face model folder's file: models/ may spell it there.)
RUN_ONLY = {names.METRICS, names.RUN_INFO, names.MANIFEST, names.OOF, names.VALID_PREDS, names.PREDICTOR,
            names.TEST_PREDS, names.LOSS_CURVE}
HF_FOLDER_MODULES = {"kagglelib/models/build.py", "kagglelib/models/shape.py", "kagglelib/models/pairwise.py"}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name a file; code may not)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def spelled_names(path: Path, rel: str = "") -> list[str]:
    """Where a module outside kagglelib/run/ imports a file-name constant of a run or spells a run file's name."""
    rel = rel or path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    spelled = RUN_ONLY | ({names.CONFIG} if rel not in HF_FOLDER_MODULES else set())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "run" in node.module.split("."):
            found += [f"{rel}:{node.lineno} imports {a.name}" for a in node.names if a.name in NAME_CONSTANTS]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            # the name itself, or a path ending in it ("runs/x/metrics.json"); prose in messages may mention it
            hit = [n for n in spelled if node.value == n or node.value.endswith("/" + n)]
            found += [f"{rel}:{node.lineno} spells {node.value!r}" for _ in hit[:1]]
    return found


def test_only_the_run_package_spells_run_file_names():
    modules = [p for p in sorted(PKG.rglob("*.py")) if "run" not in p.relative_to(PKG).parts[:1]]
    assert len(modules) > 40
    found = [hit for p in modules for hit in spelled_names(p)]
    assert not found, "run folder file names outside kagglelib/run/ (use Run / the stage's *_file paths):\n" + \
        "\n".join(found)


def test_the_check_sees_what_it_must(tmp_path):
    """The walk above finds an imported constant, a literal and a path spelled with it (so it can fail)."""
    bad = tmp_path / "probe.py"
    bad.write_text('"""Writes metrics.json."""\nfrom .run.layout import OOF\nfrom kagglelib.run.names import METRICS\n'
                   'P = "runs/a/valid_preds.csv"\nQ = "config.json"\nR = "no oof.csv here"\n', encoding="utf-8")
    hits = spelled_names(bad, "kagglelib/inference/probe.py")
    assert [h.split(" ", 1)[1] for h in hits] == ["imports OOF", "imports METRICS", "spells 'runs/a/valid_preds.csv'",
                                                   "spells 'config.json'"]
