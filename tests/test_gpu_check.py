"""bench/gpu_check.py --tiny on CPU: the script the GPU run uses cannot rot; a stopped run leaves its files; the
utilisation keys are distinct per GPU x model x mode x precision (issue 20)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from kagglelib.core.paths import REPO_ROOT

SCRIPT = str(REPO_ROOT / "bench" / "gpu_check.py")
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    res = subprocess.run([sys.executable, SCRIPT, "--tiny", "--out", str(tmp_path), "--work", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=900, env=ENV)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {r["check"]: r for r in report["rows"]}
    ran = [r for r in rows.values() if "skipped" not in r]
    assert len(ran) >= 8 and all(r["ok"] for r in ran) and report["complete"]
    assert all("CUDA" in rows[c]["skipped"] for c in ("train_9b_4bit", "infer_9b_4bit", "infer_9b_8bit"))
    assert rows["train_2b_fp16_lora"]["loss_finite"] and rows["train_2b_fp16_lora"]["grads_finite"]
    assert rows["train_2b_fp16_lora"]["scaler_skipped_steps"] == 0 and rows["train_2b_fp16_lora"]["applied_steps"] == 2
    assert rows["padding_equals_single_rows"]["max_abs_diff"] <= 1e-5
    keys = [r["bench_key"] for r in ran if "bench_key" in r]
    assert len(keys) == 5 and len(set(keys)) == len(keys)   # 3 training modes x models, 2 inference models
    assert "cpu/deberta-v3-large/train-full/fp32" in keys and "cpu/gemma-2-2b/train-lora/fp32" in keys
    assert report["mfu"] == {}   # CPU timings never reach the planner
    assert (tmp_path / "work" / "sample-tokenizer" / "tokenizer.json").is_file()   # no MiniLM package needed
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| two_predictors_equal_sequential | ok |" in table and "(tiny shapes, CPU)" in table
    assert "peak reserved GiB" in table


@pytest.mark.slow
def test_a_stopped_run_leaves_its_files(tmp_path):
    """Killed after its first check, and stopped by --budget-s: both leave valid JSON and markdown."""
    work = tmp_path / "work"
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, SCRIPT, "--tiny", "--out", str(killed), "--work", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if (killed / "gpu_check.json").exists():
                break
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    report = json.loads((killed / "gpu_check.json").read_text())
    assert report["complete"] is False and report["rows"][0]["check"] == "train_2b_fp16_lora"
    assert report["rows"][0]["ok"] and "| train_2b_fp16_lora | ok |" in (killed / "gpu_check.md").read_text()

    budget = tmp_path / "budget"
    only = "train_2b_fp16_lora,infer_2b_fp16,padding_equals_single_rows"
    res = subprocess.run([sys.executable, SCRIPT, "--tiny", "--out", str(budget), "--work", str(work), "--only", only,
                          "--budget-s", "0.5"], capture_output=True, text=True, timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((budget / "gpu_check.json").read_text())
    rows = report["rows"]
    assert [r["check"] for r in rows] == ["train_2b_fp16_lora", "padding_equals_single_rows", "infer_2b_fp16"]
    assert report["complete"] and report["budget_s"] == 0.5 and "--budget-s 0.5" in rows[1]["skipped"]
    assert rows[0]["ok"] and all(r["skipped"].startswith("budget:") for r in rows[1:])
