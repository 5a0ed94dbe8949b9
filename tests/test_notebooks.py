"""Every numbered notebook: contract parameters, kernelspec, and a headless papermill run on the sample."""
from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONTRACT = {"train_path", "test_path", "output_dir", "run_name", "profile"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(nb):
    content = json.loads(nb.read_text())
    assert content["metadata"]["kernelspec"]["name"] == "python3"
    tagged = [c for c in content["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = pm.inspect_notebook(str(nb))
    assert CONTRACT <= set(params), f"missing contract parameters: {CONTRACT - set(params)}"
    n_lines = len("".join(tagged[0]["source"]).splitlines())
    assert len(params) == n_lines, "every parameters line must parse (no '=' inside comments)"
    code = "".join("".join(c["source"]) for c in content["cells"] if c["cell_type"] == "code")
    assert "def " not in code and "pip install" not in code


def test_eda_notebook_runs(tmp_path):
    out = tmp_path / "out"
    pm.execute_notebook(str(ROOT / "notebooks" / "01_eda.ipynb"), str(tmp_path / "01.ipynb"),
                        parameters={"output_dir": str(out), "run_name": "eda"}, cwd=str(ROOT / "notebooks"),
                        progress_bar=False)
    run = out / "runs" / "eda"
    for name in ("config.json", "metrics.json", "label_balance.png", "lengths.png", "verbosity_bias.png",
                 "tie_vs_similarity.png", "model_win_rates.png"):
        assert (run / name).stat().st_size > 0, name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train"] == 1110 and metrics["n_test"] == 200
    assert metrics["label_share"] == {"A": 0.3405, "B": 0.3514, "tie": 0.3081}
