"""Inference: exact swap-TTA symmetry, resumable chunks, time budget, devices, ensembling, rules."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kagglelib.scoring.metrics import log_loss
from kagglelib.data.frame import swap_ab, swap_probs
from kagglelib.data.load import load_arena
from kagglelib.scoring.ensemble import apply_rules, blend, fit_rules, fit_weights
from kagglelib.inference.predictors import predict_pair
from kagglelib.inference.tta import predict_chunked, tta_predict


def biased_toy(df: pd.DataFrame) -> np.ndarray:
    """A position-biased, length-driven toy model: prefers A and the longer answer."""
    la = df["response_a"].map(lambda t: len("".join(t))).to_numpy(dtype=float)
    lb = df["response_b"].map(lambda t: len("".join(t))).to_numpy(dtype=float)
    z = np.stack([np.log1p(la) - np.log1p(lb) + 0.4, np.log1p(lb) - np.log1p(la), np.zeros(len(df))], axis=1)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Counting:
    """Wraps a predictor, counts rows predicted, and can fail on the call after ``fail_after`` calls."""

    def __init__(self, fn, fail_after: int | None = None):
        self.fn, self.fail_after, self.calls, self.rows = fn, fail_after, 0, 0

    def __call__(self, df):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.rows += len(df)
        return self.fn(df)


def test_tta_is_exactly_symmetric(train_df):
    df = train_df.head(300)
    p = tta_predict(biased_toy, df)
    q = tta_predict(biased_toy, swap_ab(df))
    assert np.abs(q - swap_probs(p)).max() <= 1e-12
    raw = biased_toy(df)
    assert np.abs(biased_toy(swap_ab(df)) - swap_probs(raw)).max() > 0.1   # the toy itself is biased


def test_chunked_symmetry_on_bad_test_file(tmp_path, write_csv):
    rows = [{"id": 5, "prompt": '["q"]', "response_a": '["same"]', "response_b": '["same"]'},
            {"id": 5, "prompt": '["q"]', "response_a": "", "response_b": '["x"]'},       # duplicate id, empty
            {"id": 9, "prompt": "not json [", "response_a": '["a" * 3]', "response_b": '["b"]'}]
    test = load_arena(write_csv(rows * 7))
    p, status = predict_chunked(biased_toy, test, tmp_path / "c1", chunk_rows=4, progress=False)
    q, _ = predict_chunked(biased_toy, swap_ab(test), tmp_path / "c2", chunk_rows=4, progress=False)
    assert status["complete"] and status["chunks"] == 6
    assert np.abs(q - swap_probs(p)).max() <= 1e-12
    assert len(p) == 21 and np.isfinite(p).all()


def test_resume_after_crash_matches_uninterrupted(tmp_path, train_df):
    df = train_df.head(500)
    full, _ = predict_chunked(biased_toy, df, None, chunk_rows=64, progress=False)
    crashing = Counting(biased_toy, fail_after=6)          # 3 chunks done (2 calls each with TTA), then crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_chunked(crashing, df, tmp_path, chunk_rows=64, progress=False)
    assert len(list(tmp_path.glob("chunk_*.npz"))) == 3
    again = Counting(biased_toy)
    resumed, status = predict_chunked(again, df, tmp_path, chunk_rows=64, progress=False)
    assert status["reused"] == 3 and status["computed"] == 5
    assert again.rows == 2 * (500 - 3 * 64)                 # finished chunks were not recomputed
    assert np.array_equal(resumed, full)
    # a changed test file invalidates the chunks whose ids differ
    changed = df.assign(id=df["id"] + 1)
    fresh = Counting(biased_toy)
    predict_chunked(fresh, changed, tmp_path, chunk_rows=64, progress=False)
    assert fresh.rows == 2 * 500


def test_time_budget_stops_cleanly(train_df):
    import time

    slow = lambda df: (time.sleep(0.05), biased_toy(df))[1]  # noqa: E731
    probs, status = predict_chunked(slow, train_df.head(200), None, chunk_rows=20, time_budget_s=0.3,
                                    progress=False)
    assert not status["complete"] and status["skipped_for_time"] > 0
    assert status["computed"] + status["skipped_for_time"] == 10
    done = np.isfinite(probs).all(axis=1)
    assert done[:20].all() and not done[-20:].any()


def test_several_devices_keep_row_order(train_df):
    df = train_df.head(333)
    one, _ = predict_chunked(biased_toy, df, None, chunk_rows=50, progress=False)
    two, status = predict_chunked([biased_toy, biased_toy], df, None, chunk_rows=50, progress=False)
    assert np.array_equal(one, two) and status["computed"] == 7


def test_predict_pair():
    p = predict_pair("Why?", "Because of physics, explained at length.", "No.", biased_toy)
    assert set(p) == {"winner_model_a", "winner_model_b", "winner_tie"}
    assert abs(sum(p.values()) - 1) < 1e-9 and p["winner_model_a"] > p["winner_model_b"]
    q = predict_pair("Why?", "No.", "Because of physics, explained at length.", biased_toy)
    assert abs(q["winner_model_b"] - p["winner_model_a"]) < 1e-12


def test_fit_weights_prefers_the_better_run(train_df):
    y = train_df["label"].to_numpy()
    good = np.eye(3)[y] * 0.5 + 0.5 / 3
    noise = np.random.default_rng(0).dirichlet([1, 1, 1], size=len(y))
    w = fit_weights([noise, good], y)
    assert w.shape == (2,) and abs(w.sum() - 1) < 1e-9 and (w >= 0).all() and w[1] > 0.9
    assert log_loss(y, blend([noise, good], w)) <= log_loss(y, good) + 1e-6


def test_blend_falls_back_per_row():
    a = np.array([[0.6, 0.2, 0.2], [np.nan, np.nan, np.nan]])
    b = np.array([[0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
    out = blend([a, b], np.array([0.5, 0.5]))
    assert np.allclose(out, [[0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    with pytest.raises(ValueError, match="no prediction"):
        blend([a], np.ones(1))
    assert np.allclose(blend([a], np.ones(1), fallback=np.array([0.3, 0.3, 0.4]))[1], [0.3, 0.3, 0.4])


def test_rules_accepted_only_when_they_help(write_csv):
    rows = []
    for i in range(12):   # identical responses: mostly ties
        rows.append({"id": i, "prompt": '["q"]', "response_a": '["same"]', "response_b": '["same"]',
                     "winner_model_a": 0, "winner_model_b": int(i == 0), "winner_tie": int(i != 0)})
    for i in range(12, 24):
        rows.append({"id": i, "prompt": '["q"]', "response_a": '["long answer"]', "response_b": '["other"]',
                     "winner_model_a": 1, "winner_model_b": 0, "winner_tie": 0})
    df = load_arena(write_csv(rows))
    y = df["label"].to_numpy()
    uniform = np.full((len(df), 3), 1 / 3)
    rules = fit_rules(df, uniform, y)
    assert rules.identical is not None and rules.identical[2] > 0.7 and rules.identical[0] == rules.identical[1]
    assert rules.one_empty is None and rules.report[1]["rows"] == 0
    fixed = apply_rules(df, uniform, rules)
    assert log_loss(y, fixed) < log_loss(y, uniform)
    assert np.allclose(apply_rules(swap_ab(df), swap_probs(uniform), rules), swap_probs(fixed))
    perfect = np.eye(3)[y] * 0.98 + 0.02 / 3
    assert fit_rules(df, perfect, y).identical is None        # the model already beats the rule
    identical, one_empty = rules.report
    assert identical["rule"] == "identical" and identical["rows"] == 12 and identical["accepted"] is True
    assert identical["model_log_loss"] == pytest.approx(np.log(3)) and identical["rule_log_loss"] < np.log(3)
    assert one_empty == {"rule": "one_empty", "rows": 0, "accepted": False}
    assert json.loads(json.dumps(rules.report)) == rules.report     # plain Python values: metrics.json can hold it


@pytest.mark.slow
def test_loading_runs_for_prediction_imports_no_trainer(tmp_path):
    """A kernel that only predicts must not need the trainers (or matplotlib): checked in a fresh process."""
    import os
    import subprocess
    import sys

    from kagglelib.training.baseline import BaselineConfig, run_baseline
    from kagglelib.core.paths import sample_paths

    cfg = BaselineConfig(output_dir=str(tmp_path), run_name="b", n_folds=2, n_estimators=30,
                                  max_train_rows=200, use_char_tfidf=False, use_embeddings=False, compare=False,
                                  embedding_components=0)
    run_baseline(cfg)
    code = ("import sys, numpy as np; from kagglelib.inference.predictors import load_predictor; "
            f"from kagglelib.data.load import load_arena; p = load_predictor({str(cfg.run_dir)!r})(load_arena({str(sample_paths()[1])!r})); "
            "assert np.isfinite(p).all(); bad = [m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m.startswith("
            "'kagglelib.training') or m == 'kagglelib.scoring.plots']; print('BAD', bad)")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], cwd=sample_paths()[1].parents[2], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BAD []" in done.stdout


def test_train_path_is_checked_against_each_runs_provenance(tmp_path, train_df, caplog):
    from kagglelib.inference.submit import check_provenance
    from kagglelib.core.paths import sample_paths
    from kagglelib.core.io import write_json
    from kagglelib.run.info import provenance, write_run_info
    from kagglelib.run.store import write_manifest

    runs = [tmp_path / n for n in ("same", "other", "old")]
    for r in runs:
        r.mkdir()
    write_run_info(runs[0], "baseline", "kaggle", provenance(train_df, sample_paths()[0]))
    write_run_info(runs[1], "baseline", "kaggle", provenance(train_df.head(100), "train.csv"))
    for r in runs:   # committed runs: a config and a manifest
        write_json({"config_class": "BaselineConfig"}, r / "config.json")
        write_manifest(r)
    rows = check_provenance(str(sample_paths()[0]), runs)
    assert [r["matches_train_path"] for r in rows] == [True, False, False]
    assert "run other was not trained on" in caplog.text and "run old was not trained on" in caplog.text
    assert [r["matches_train_path"] for r in check_provenance("", runs)] == [None, None, None]  # "" reads nothing
    assert rows[0]["train_file"] == "train.csv.gz" and rows[1]["n_rows"] == 100
