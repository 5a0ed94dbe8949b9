"""Every numbered notebook: contract parameters, kernelspec, and a headless papermill run on the sample."""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from kagglelib.run.config import MISSPELLING_CUTOFF, parameter_names

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONTRACT = {"train_path", "test_path", "output_dir", "run_name", "profile"}


def parameters_cell(content: dict) -> str:
    """The source of the notebook's one cell tagged ``parameters``."""
    tagged = [c for c in content["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return "".join(tagged[0]["source"])


def config_class(content: dict) -> type:
    """The config dataclass the notebook builds with ``from_params(<class>, globals())``."""
    code = "".join("".join(c["source"]) for c in content["cells"] if c["cell_type"] == "code")
    (cls,) = re.findall(r"from_params\((\w+), globals\(\)\)", code)
    (module,) = re.findall(rf"from (kagglelib[\w.]*) import [^\n]*\b{cls}\b", code)
    return getattr(importlib.import_module(module), cls)


def flat_defaults(cls: type) -> dict[str, object]:
    """The declared defaults by flat parameter name (a part's fields from its default), before __post_init__."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.update(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(nb):
    content = json.loads(nb.read_text())
    assert content["metadata"]["kernelspec"]["name"] == "python3"
    cell = parameters_cell(content)
    params = pm.inspect_notebook(str(nb))
    assert CONTRACT <= set(params), f"missing contract parameters: {CONTRACT - set(params)}"
    assert len(params) == len(cell.splitlines()), "every parameters line must parse (no '=' inside comments)"
    code = "".join("".join(c["source"]) for c in content["cells"] if c["cell_type"] == "code")
    assert "def " not in code and "pip install" not in code
    # Notebook-only switches (03's demo_resume) must not read as a misspelt field, or from_params rejects them.
    fields = list(parameter_names(config_class(content)))   # flat names, the parts' fields included
    for extra in set(params) - set(fields):
        assert not difflib.get_close_matches(extra, fields, 1, MISSPELLING_CUTOFF), f"{extra} looks like a typo"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_shows_the_dataclass_defaults_in_its_order(nb):
    """The cell lists a subset of the parameters (any other is set with papermill -p): each with a comment, in the
    dataclass's order, its value the default, or None (not set) exactly where a profile sets it: a value there would
    override every profile's."""
    content = json.loads(nb.read_text())
    cls = config_class(content)
    defaults = flat_defaults(cls)   # the cpu-sample values
    order = list(parameter_names(cls))
    by_profile = {k for table in cls.PROFILE_DEFAULTS.values() for k in table}
    shown = []
    for stmt in ast.parse(parameters_cell(content)).body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, ast.unparse(stmt)
        name, value = stmt.targets[0].id, ast.literal_eval(stmt.value)
        if name in by_profile:
            assert value is None, f"{nb.stem}: {name} = {value!r} would override the profiles' values; write None"
        elif name in defaults:
            default = defaults[name]
            assert value == default and type(value) is type(default), \
                f"{nb.stem}: {name} = {value!r}, but {cls.__name__}'s default is {default!r}"
        if name in defaults:
            shown.append(name)
    assert shown == sorted(shown, key=order.index), f"{nb.stem}: parameters not in {cls.__name__} field order"
    for line in parameters_cell(content).splitlines():
        assert "#" in line and line.split("#", 1)[1].strip(), f"{nb.stem}: no comment on {line!r}"


# Small settings so the whole chain runs in a couple of minutes on 2 cores; run_all.sh uses the defaults.
FAST = {
    "01_eda": {},
    "02_baseline": {"n_folds": 3, "n_estimators": 300, "learning_rate": 0.05, "embedding_components": 0},
    "03_train_gemma_lora": {},
    "04_train_deberta": {"method": "finetune", "max_train_rows": 96, "max_valid_rows": 64, "max_steps": 6, "max_length": 128},
    "05_tta_inference": {"chunk_rows": 64},
    "06_ablation_plots": {"probe_rows": 24, "n_bootstrap": 100, "factors": ""},
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Execute every numbered notebook in order on the sample into one output folder."""
    tmp = tmp_path_factory.mktemp("suite")
    out = tmp / "outputs"
    assert [nb.stem for nb in NOTEBOOKS] == list(FAST), "a new notebook needs FAST settings here"
    # The kernels draw as run_all.sh and Kaggle have them draw: inline (conftest's Agg would hide every figure).
    backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        for nb in NOTEBOOKS:
            pm.execute_notebook(str(nb), str(tmp / nb.name), parameters={"output_dir": str(out), **FAST[nb.stem]},
                                cwd=str(ROOT / "notebooks"), progress_bar=False)
    finally:
        if backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = backend
    return out


@pytest.mark.notebooks
@pytest.mark.parametrize("name, pngs", [("01_eda", 5), ("02_baseline", 2)])
def test_executed_notebooks_show_their_figures_inline(suite, name, pngs):
    """Every figure the notebook saves as PNG is also shown inline in the executed copy (no bare <Figure ...>)."""
    cells = json.loads((suite.parent / f"{name}.ipynb").read_text())["cells"]
    outputs = [o for c in cells for o in c.get("outputs", [])]
    inline = sum("image/png" in o.get("data", {}) for o in outputs)
    assert inline >= pngs, f"{name}: {inline} inline images, expected at least {pngs}"
    assert not any("<Figure size" in "".join(o.get("data", {}).get("text/plain", "")) and "image/png" not in o["data"]
                   for o in outputs if "data" in o)


@pytest.mark.notebooks
def test_eda_outputs(suite):
    run = suite / "runs" / "eda"
    for name in ("config.json", "metrics.json", "label_balance.png", "lengths.png", "verbosity_bias.png",
                 "tie_vs_similarity.png", "model_win_rates.png"):
        assert (run / name).stat().st_size > 0, name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train"] == 1110 and metrics["n_test"] == 200
    assert metrics["label_share"] == {"A": 0.3405, "B": 0.3514, "tie": 0.3081}


@pytest.mark.notebooks
@pytest.mark.parametrize("run, files", [
    ("baseline", ["oof.csv", "test_preds.csv", "submission.csv", "feature_importance.png", "calibration.png"]),
    ("gemma_lora", ["valid_preds.csv", "loss_curve.png", "model/adapter_config.json"]),
    ("encoder", ["valid_preds.csv", "loss_curve.png", "model/model.safetensors"]),
])
def test_training_runs_leave_artifacts(suite, run, files):
    folder = suite / "runs" / run
    for name in ["config.json", "metrics.json", *files]:
        assert (folder / name).stat().st_size > 0, name
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["run_name"] == run and cfg["profile"] == "cpu-sample"
    if run == "gemma_lora":
        assert json.loads((folder / "metrics.json").read_text())["smoke"] is True


@pytest.mark.notebooks
def test_submission_from_blend(suite):
    from kagglelib.core.paths import sample_paths
    from kagglelib.scoring.submission import validate_submission

    sub = validate_submission(suite / "submission.csv", sample_paths()[1])
    assert len(sub) == 200
    m = json.loads((suite / "runs" / "submission" / "metrics.json").read_text())
    assert m["runs"] == ["baseline", "encoder"] and m["complete"] and m["tta"]
    assert abs(sum(m["weights"].values()) - 1) < 1e-9
    assert m["status"][1]["chunks"] == 4 and m["status"][1]["computed"] == 4


@pytest.mark.notebooks
@pytest.mark.usefixtures("one_torch_thread")   # 2 threads on 2 shared cores: 42 s instead of 15 s
def test_real_run_tta_is_exactly_symmetric(suite):
    from kagglelib.data.frame import swap_ab, swap_probs
    from kagglelib.data.load import load_arena
    from kagglelib.inference.predictors import load_predictor
    from kagglelib.inference.tta import predict_chunked
    from kagglelib.core.paths import sample_paths

    test = load_arena(sample_paths()[1]).head(48)
    predict = load_predictor("encoder", suite)
    p, _ = predict_chunked(predict, test, chunk_rows=16, progress=False)
    q, _ = predict_chunked(predict, swap_ab(test), chunk_rows=16, progress=False)
    assert np.abs(q - swap_probs(p)).max() < 1e-6
    raw_p, raw_q = predict(test), predict(swap_ab(test))
    assert np.abs(raw_q - swap_probs(raw_p)).max() > 1e-6      # without TTA the model is not symmetric


@pytest.mark.notebooks
def test_ablation_outputs(suite):
    ab = suite / "ablation"
    for name in ("ablation_table.csv", "ablation_table.md", "ablation_log_loss.png", "calibration.csv",
                 "reliability.png", "bias_report.json", "bias_probes.png"):
        assert (ab / name).stat().st_size > 0, name
    table = pd.read_csv(ab / "ablation_table.csv")
    assert set(table["run"]) == {"baseline", "gemma_lora", "encoder"}
    assert table.set_index("run").loc["gemma_lora", "smoke"] == True  # noqa: E712
    report = json.loads((ab / "bias_report.json").read_text())
    # The tiny random Gemma-2 run is a flagged row of the table, never a bar of a shown figure (issue 21).
    assert set(report) == {"baseline", "encoder"}
    for run in report.values():
        assert run["tta"]["flip_rate"] == 0 and run["tta"]["mean_abs_ab_gap"] < 1e-6


@pytest.mark.notebooks
def test_readme_report_is_built_from_the_runs(suite, tmp_path):
    from kagglelib.report import results_markdown, update_readme
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nstale\n<!-- results:end -->\noutro\n")
    update_readme(readme, results_markdown(suite, tmp_path / "fig", tmp_path))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    table = pd.read_csv(suite / "ablation" / "ablation_table.csv").set_index("run")
    assert "| baseline | lgbm |" in text and f"{table.loc['baseline', 'log_loss']:.4f}" in text
    assert "| 3 |" in text and "3.0000" not in text          # counts print as integers
    assert "![Bias probes on the bundled sample](fig/bias_probes.png)" in text
    assert (tmp_path / "fig" / "bias_probes.png").stat().st_size > 0
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, "x")
