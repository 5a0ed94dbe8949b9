"""The user's journey end to end: train 02 + an encoder run, 05, package, and run the packaged kernel offline.

The kernel runs in a simulated Kaggle (``KAGGLELIB_KAGGLE_ROOT``: ``input/`` holds only the packaged dataset,
the competition folder and a decoy dataset with its own train.csv; ``working/``), in a fresh process
without the checkout on ``PYTHONPATH``, after the training folder (its data and outputs) was moved away.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
from kaggle_cli import commands_in, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "notebooks"
COMPETITION = "llm-classification-finetuning"


def _read_only(folder: Path) -> None:
    """Make a tree read-only, as /kaggle/input is."""
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _run_kernel(notebook: Path, kaggle_root: Path, executed: Path) -> subprocess.CompletedProcess:
    """papermill in a fresh process: cwd /kaggle/working, no PYTHONPATH (the checkout is not importable)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(KAGGLELIB_KAGGLE_ROOT=str(kaggle_root), MPLBACKEND="module://matplotlib_inline.backend_inline")
    return subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(executed), "--cwd",
                           str(kaggle_root / "working"), "--no-progress-bar"], cwd=kaggle_root / "working", env=env,
                          capture_output=True, text=True, timeout=1200)


def test_packaged_kernel_reproduces_the_submission_offline(tmp_path):
    home = tmp_path / "training_machine"
    data, out = home / "data", home / "outputs"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "data" / "sample" / "train.csv.gz", data / "train.csv.gz")
    shutil.copy(ROOT / "data" / "sample" / "test.csv", data / "test.csv")
    common = {"train_path": str(data / "train.csv.gz"), "test_path": str(data / "test.csv"), "output_dir": str(out)}
    pm.execute_notebook(str(NB / "02_baseline.ipynb"), str(tmp_path / "02.ipynb"), cwd=str(NB), progress_bar=False,
                        parameters={**common, "n_folds": 3, "n_estimators": 300, "learning_rate": 0.05,
                                    "embedding_components": 0})
    pm.execute_notebook(str(NB / "04_train_deberta.ipynb"), str(tmp_path / "04.ipynb"), cwd=str(NB), progress_bar=False,
                        parameters={**common, "method": "finetune", "backbone": "tiny-deberta", "use_lora": False, "max_train_rows": 64,
                                    "max_valid_rows": 48, "max_steps": 4, "max_length": 96})
    # 05 before packaging, with the kernel's profile (same chunks and batches, so the numbers must agree).
    pm.execute_notebook(str(NB / "05_tta_inference.ipynb"), str(tmp_path / "05.ipynb"), cwd=str(NB),
                        progress_bar=False, parameters={**common, "runs": "baseline,encoder", "profile": "kaggle-t4"})
    want = pd.read_csv(out / "submission.csv", dtype={"id": str})

    # Package as the README says.
    done = subprocess.run([sys.executable, "-m", "kagglelib.packaging", "--runs", "baseline,encoder", "--user", "me",
                           "--output-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    package = out / "kaggle"
    assert not (package / "dataset" / "wheels").exists() or not list((package / "dataset" / "wheels").iterdir())
    # Every command the packager printed, as printed, through the real kaggle CLI (network stubbed).
    commands = commands_in((package / "COMMANDS.txt").read_text())
    assert f"kaggle competitions submit {COMPETITION} -f submission.csv -k me/arena-pref-inference -v VERSION" in (
        "\n".join(commands))
    for command in commands:
        result = run_cli(command.replace("VERSION", "1"), tmp_path, tmp_path / "kaggle_cfg")
        assert result.code == 0 and "error" not in result.out.lower(), (command, result.out)
    assert json.loads((package / "kernel" / "kernel-metadata.json").read_text())["machine_shape"] == "NvidiaTeslaT4"

    # The simulated Kaggle: the packaged dataset, the competition files, a decoy dataset with its own train.csv.
    kaggle = tmp_path / "kaggle"
    shutil.copytree(package / "dataset", kaggle / "input" / "arena-pref-runs")
    comp = kaggle / "input" / COMPETITION
    comp.mkdir(parents=True)
    with gzip.open(data / "train.csv.gz", "rb") as src, open(comp / "train.csv", "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(data / "test.csv", comp / "test.csv")
    decoy = kaggle / "input" / "aaa-other-dataset"
    decoy.mkdir()
    pd.read_csv(comp / "test.csv").head(5).to_csv(decoy / "test.csv", index=False)
    pd.read_csv(comp / "train.csv").head(5).to_csv(decoy / "train.csv", index=False)
    (kaggle / "working").mkdir()
    kernel_nb = kaggle / "kernel.ipynb"
    shutil.copy(package / "kernel" / "05_tta_inference.ipynb", kernel_nb)
    _read_only(kaggle / "input")
    # The training machine's folders (data, outputs, every path its runs recorded) are gone.
    shutil.move(str(home), str(tmp_path / "gone"))

    result = _run_kernel(kernel_nb, kaggle, kaggle / "working" / "executed.ipynb")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    executed = json.loads((kaggle / "working" / "executed.ipynb").read_text())
    printed = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for c in executed["cells"] for o in c.get("outputs", []))
    assert f"kagglelib from {kaggle / 'input' / 'arena-pref-runs'}" in printed

    got = pd.read_csv(kaggle / "working" / "submission.csv", dtype={"id": str})
    test_ids = pd.read_csv(comp / "test.csv", dtype={"id": str})["id"].tolist()
    assert got["id"].tolist() == test_ids and list(got.columns) == list(want.columns)
    probs = got.iloc[:, 1:].to_numpy(dtype=np.float64)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(probs, want.iloc[:, 1:].to_numpy(dtype=np.float64), atol=1e-9, rtol=0)
    summary = json.loads((kaggle / "working" / "outputs" / "runs" / "submission" / "metrics.json").read_text())
    assert summary["complete"] and summary["layout"] == "kaggle" and summary["runs"] == ["baseline", "encoder"]
    assert [p["train_file"] for p in summary["provenance"]] == ["train.csv.gz", "train.csv.gz"]

