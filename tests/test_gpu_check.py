"""bench/gpu_check.py --tiny on CPU: the script the GPU run uses cannot rot."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kagglelib.core.paths import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    res = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "gpu_check.py"), "--tiny", "--out", str(tmp_path),
                          "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=900,
                         env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["check"]: r for r in report["rows"]}
    ran = [r for r in rows.values() if "skipped" not in r]
    assert len(ran) >= 8 and all(r["ok"] for r in ran)
    assert all("CUDA" in rows[c]["skipped"] for c in ("train_9b_4bit", "infer_9b_4bit", "infer_9b_8bit"))
    assert rows["train_2b_fp16_lora"]["loss_finite"] and rows["train_2b_fp16_lora"]["grads_finite"]
    assert rows["padding_equals_single_rows"]["max_abs_diff"] <= 1e-5
    assert report["mfu"] == {}   # CPU timings never reach the planner
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| two_predictors_equal_sequential | ok |" in table and "(tiny shapes, CPU)" in table
