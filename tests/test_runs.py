"""A run is one consistent unit: staged + committed atomically with a manifest, locked, verified by readers;
chunk caches keyed by content; a spent time budget starts nothing; zero-padded ids survive 02 -> 05."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kagglelib.run.store import RunError, staged_run, verify_run
from kagglelib.training import baseline
from kagglelib.training.baseline import BaselineConfig, run_baseline
from kagglelib.data.load import load_arena
from kagglelib.inference.submit import InferenceConfig, run_inference
from kagglelib.inference.tta import predict_chunked
from kagglelib.core.io import read_json, write_text
from kagglelib.run.layout import find_run
from conftest import ROOT, TEST, TRAIN


def commit_run(tmp_path, name="r", files=None):
    with staged_run(tmp_path, name) as stage:
        for rel, text in (files or {"config.json": '{"config_class": "BaselineConfig"}', "a.txt": "A",
                                   "sub/b.txt": "B"}).items():
            write_text(text, stage.path / rel)
    return stage.final


def test_commit_writes_manifest_and_leaves_nothing_behind(tmp_path):
    run = commit_run(tmp_path)
    m = verify_run(run)
    assert set(m["files"]) == {"config.json", "a.txt", "sub/b.txt"}
    assert m["files"]["a.txt"]["size"] == 1 and len(m["files"]["a.txt"]["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]   # no lock, staging or old folder
    assert find_run("r", tmp_path) == run


@pytest.mark.parametrize("damage, pattern", [
    (lambda r: (r / "a.txt").write_text("changed"), r"file a\.txt differs"),
    (lambda r: (r / "sub" / "b.txt").unlink(), r"file sub/b\.txt listed .* is missing"),
    (lambda r: (r / "lgbm_fold4.txt").write_text("old fold"), r"file lgbm_fold4\.txt is not listed"),
    (lambda r: (r / "manifest.json").unlink(), r"no manifest\.json.*re-run 02_baseline"),
])
def test_readers_refuse_a_damaged_or_mixed_run(tmp_path, damage, pattern):
    run = commit_run(tmp_path)
    damage(run)
    with pytest.raises(RunError, match=pattern) as err:
        find_run("r", tmp_path)
    assert str(run) in str(err.value)


def test_checkpoints_and_cache_are_not_part_of_the_run(tmp_path):
    run = commit_run(tmp_path, files={"config.json": "{}", "checkpoints/checkpoint-2/x.bin": "c",
                                      "cache/chunk.npz": "c", "model/w.bin": "w"})
    assert set(verify_run(run)["files"]) == {"config.json", "model/w.bin"}
    write_text("more", run / "checkpoints" / "checkpoint-4" / "y.bin")
    write_text("{}", run / ".ipynb_checkpoints" / "x-checkpoint.ipynb")
    verify_run(run)   # resumption state and hidden litter may change without breaking the run


def test_failed_write_keeps_the_old_run_whole(tmp_path):
    old = commit_run(tmp_path, files={"config.json": '{"v": 1}', "fold0.txt": "1", "fold1.txt": "1"})
    with pytest.raises(RuntimeError, match="killed"):
        with staged_run(tmp_path, "r") as stage:
            write_text('{"v": 2}', stage.path / "config.json")
            write_text("2", stage.path / "fold0.txt")
            raise RuntimeError("killed midway")
    assert read_json(old / "config.json") == {"v": 1} and (old / "fold1.txt").read_text() == "1"
    verify_run(old)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]


def test_second_writer_is_stopped_with_the_holder_named(tmp_path):
    with staged_run(tmp_path, "r"):
        with pytest.raises(RunError, match=rf"run 'r' is being written by pid {os.getpid()} on host \S+ since"):
            with staged_run(tmp_path, "r"):
                pass
    commit_run(tmp_path)   # released afterwards


def test_writer_in_another_process_is_named(tmp_path):
    code = ("import sys, time; from kagglelib.run import store\n"
            "with store.staged_run(sys.argv[1], 'r'):\n    print('locked', flush=True); time.sleep(30)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=rf"run 'r' is being written by pid {holder.pid} on host"):
            commit_run(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    run = commit_run(tmp_path)   # the killed holder's lock is stale now: taken over
    verify_run(run)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]   # its staging folder cleaned up


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / ".r.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                          "time": "2026-01-01T00:00:00"}))
    with caplog.at_level(logging.WARNING, logger="kagglelib.runs"):
        run = commit_run(tmp_path)
    assert "stale lock" in caplog.text and str(dead.pid) in caplog.text
    verify_run(run)


def test_kill_between_the_two_renames_restores_the_old_run(tmp_path):
    old = commit_run(tmp_path, files={"config.json": '{"v": 1}'})
    os.replace(old, tmp_path / "runs" / ".r.old-12345")   # as if killed right after moving the old run aside
    with pytest.raises(RuntimeError):
        with staged_run(tmp_path, "r"):
            assert read_json(old / "config.json") == {"v": 1}   # restored before the new writer starts
            raise RuntimeError("stop")
    verify_run(old)


# ---------------------------------------------------------------- content-keyed chunk caches, time budget

class Counting:
    def __init__(self):
        self.rows = 0

    def __call__(self, df):
        self.rows += len(df)
        return np.tile([0.5, 0.3, 0.2], (len(df), 1)) + np.array([[len("".join(t)) * 1e-4, 0, 0] for t in df["prompt"]])


def test_chunk_cache_is_keyed_by_texts_run_and_settings(test_df, tmp_path):
    df = test_df.head(40)
    first = Counting()
    p1, _ = predict_chunked(first, df, tmp_path, chunk_rows=10, tta=False, progress=False, cache_key="run1")
    again = Counting()
    p2, status = predict_chunked(again, df, tmp_path, chunk_rows=10, tta=False, progress=False, cache_key="run1")
    assert again.rows == 0 and status["reused"] == 4 and np.array_equal(p1, p2)
    edited = df.copy()
    edited.at[edited.index[13], "prompt"] = ["an edited prompt, same id"]
    third = Counting()
    p3, status = predict_chunked(third, edited, tmp_path, chunk_rows=10, tta=False, progress=False, cache_key="run1")
    assert third.rows == 10 and status["computed"] == 1 and p3[13, 0] != p1[13, 0]
    other_run = Counting()
    predict_chunked(other_run, df, tmp_path, chunk_rows=10, tta=False, progress=False, cache_key="run2")
    assert other_run.rows == 40   # another run or setting recomputes every chunk


def test_spent_budget_starts_no_chunk_but_uses_the_cache(test_df, tmp_path):
    df = test_df.head(30)
    idle = Counting()
    probs, status = predict_chunked(idle, df, None, chunk_rows=10, time_budget_s=0, progress=False)
    assert idle.rows == 0 and status["skipped_for_time"] == 3 and np.isnan(probs).all()
    predict_chunked(Counting(), df.head(10), tmp_path, chunk_rows=10, progress=False)
    idle = Counting()
    probs, status = predict_chunked(idle, df, tmp_path, chunk_rows=10, time_budget_s=-5, progress=False)
    assert idle.rows == 0 and status["reused"] == 1 and np.isfinite(probs[:10]).all() and np.isnan(probs[10:]).all()


# ---------------------------------------------------------------- 02 reruns and 02 -> 05 (baseline on the sample)

def small_cfg(tmp_path, **kw) -> BaselineConfig:
    args = dict(output_dir=str(tmp_path), run_name="b", n_folds=3, n_estimators=30, learning_rate=0.1,
                max_train_rows=240, use_char_tfidf=False, use_embeddings=False, compare=False,
                embedding_components=0)
    return BaselineConfig(**{**args, **kw})


@pytest.mark.slow
def test_rerun_of_02_never_mixes_generations(tmp_path, monkeypatch):
    run = run_baseline(small_cfg(tmp_path))["run_dir"]
    # fold k: one model per other fold (it early-stops a model trained on the rest), lgbm_fold<k>_<j>.txt
    assert sorted(p.name for p in run.glob("lgbm_fold*.txt")) == [f"lgbm_fold{k}_{j}.txt" for k in range(3)
                                                                  for j in range(3) if j != k]
    run_baseline(small_cfg(tmp_path, n_folds=2))                      # fewer folds
    assert sorted(p.name for p in run.glob("lgbm_fold*.txt")) == ["lgbm_fold0_1.txt", "lgbm_fold1_0.txt"]
    verify_run(run)
    before = verify_run(run)["files"]

    def killed(*a, **k):
        raise KeyboardInterrupt("killed midway")
    monkeypatch.setattr(baseline, "write_submission", killed)                 # after oof.csv / test_preds.csv
    with pytest.raises(KeyboardInterrupt):
        run_baseline(small_cfg(tmp_path, n_folds=4, model="logreg"))
    assert verify_run(run)["files"] == before and read_json(run / "config.json")["n_folds"] == 2
    monkeypatch.undo()
    run_baseline(small_cfg(tmp_path, model="logreg"))                 # another model type
    assert not list(run.glob("lgbm_fold*.txt")) and read_json(run / "config.json")["model"] == "logreg"
    verify_run(run)


def padded_copy(src, dst, n):
    raw = pd.read_csv(src, dtype=str, keep_default_na=False).head(n)
    raw["id"] = [f"{i:08d}" for i in range(7, 7 + n)]
    raw.to_csv(dst, index=False)
    return dst


@pytest.mark.slow
def test_zero_padded_ids_survive_02_to_05_and_budget_fallback_is_reported(tmp_path):
    train = padded_copy(TRAIN, tmp_path / "train.csv", 240)
    test = padded_copy(TEST, tmp_path / "test.csv", 30)
    run_baseline(small_cfg(tmp_path, train_path=str(train), test_path=str(test), n_folds=2))
    oof = pd.read_csv(tmp_path / "runs" / "b" / "oof.csv", dtype=str)
    assert oof["id"].iloc[0].startswith("0000")
    cfg = InferenceConfig(output_dir=str(tmp_path), train_path=str(train), test_path=str(test), runs=["b"],
                          postprocess=False, devices="cpu")
    summary = run_inference(cfg)
    sub = pd.read_csv(tmp_path / "runs" / "submission" / "submission.csv", dtype=str)
    assert sub["id"].tolist() == [f"{i:08d}" for i in range(7, 37)]
    assert summary["fallback"]["rows"] == 0 and summary["complete"]
    assert list((tmp_path / "cache" / "inference" / "b").glob("chunk_*.npz"))   # cache outside the run
    verify_run(tmp_path / "runs" / "submission")

    spent = InferenceConfig(output_dir=str(tmp_path), train_path=str(train), test_path=str(test), runs=["b"],
                            postprocess=False, devices="cpu", time_budget_s=0, run_name="spent")
    for f in (tmp_path / "cache").rglob("chunk_*.npz"):
        f.unlink()
    summary = run_inference(spent)
    assert summary["status"][0]["computed"] == 0 and not summary["complete"]
    assert summary["fallback"]["rows"] == 30 and summary["fallback"]["rows_on_prior"] == 30
    rows = pd.read_csv(tmp_path / "runs" / "spent" / "fallback_rows.csv", dtype=str, keep_default_na=False)
    assert rows["id"].tolist() == sub["id"].tolist() and (rows["runs_predicted"] == "").all()
    assert rows["fallback"].str.startswith("class prior").all()


def test_warnings_for_a_train_without_ties_reach_the_run_metrics(tmp_path):
    raw = pd.read_csv(TRAIN, dtype=str, keep_default_na=False)
    raw = raw[raw["winner_tie"] == "0"].head(200)
    raw.to_csv(tmp_path / "noties.csv", index=False)
    assert any("no ties" in w for w in load_arena(tmp_path / "noties.csv").attrs["load_report"].warnings)
    result = run_baseline(small_cfg(tmp_path, train_path=str(tmp_path / "noties.csv"), n_folds=2,
                                             max_train_rows=0, model="logreg"))
    assert any("no ties" in w for w in result["metrics"]["data_warnings"])
    assert any("no ties" in w for w in read_json(result["run_dir"] / "metrics.json")["data_warnings"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_training_resumes_only_its_own_configuration(tmp_path, caplog):
    """03/04: a killed rerun leaves the committed run whole; a rerun with another config does not resume."""
    from kagglelib.training import fit
    from test_training import gemma_cfg

    fit.train(gemma_cfg(tmp_path, "g"))
    run = tmp_path / "runs" / "g"
    before = verify_run(run)["files"]
    stop = fit.train(gemma_cfg(tmp_path, "g", lr=1e-3), interrupt_at_step=2)
    assert stop["interrupted"] and "/.g.work/checkpoints/checkpoint-2" in stop["checkpoint"]
    assert verify_run(run)["files"] == before and read_json(run / "config.json")["lr"] == 5e-3
    with caplog.at_level(logging.WARNING, logger="kagglelib.training"):
        again = fit.train(gemma_cfg(tmp_path, "g", lr=2e-3))
    assert again["resumed_from"] is None and "starting fresh" in caplog.text
    assert read_json(run / "config.json")["lr"] == 2e-3 and verify_run(run)
    assert not (tmp_path / "runs" / ".g.work").exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["g"]
