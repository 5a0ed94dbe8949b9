"""The GBDT/LogReg baseline: exact A/B swap symmetry, temperature scaling, a bad test file, run artifacts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kagglelib.scoring.metrics import log_loss, prior_probs
from kagglelib.training.baseline import BaselineConfig, augment, cv_lgbm, cv_logreg, run_baseline
from kagglelib.scoring.calibration import apply_temperature, fit_temperature, softmax
from kagglelib.data.folds import make_folds
from kagglelib.data.frame import swap_ab, swap_probs
from kagglelib.data.load import load_arena
from kagglelib.data.features import FeatureConfig, PairFeaturizer, length_columns
from kagglelib.core.io import read_json
from kagglelib.core.paths import sample_paths
from kagglelib.inference.predictors import load_baseline
from kagglelib.models.tabular import symmetric_predict
from kagglelib.scoring.submission import validate_submission


@pytest.fixture(scope="module")
def data():
    train = load_arena(sample_paths()[0]).iloc[:400].reset_index(drop=True)
    test = load_arena(sample_paths()[1]).iloc[:60].reset_index(drop=True)
    fz = PairFeaturizer(FeatureConfig(use_char_tfidf=False)).fit(train)
    return train, test, fz.transform(train), fz.transform(test), fz.transform(swap_ab(test))


def small_cfg(tmp_path, **kw) -> BaselineConfig:
    args = dict(output_dir=str(tmp_path), run_name="t", n_folds=2, n_estimators=40, learning_rate=0.1,
                max_train_rows=300, use_char_tfidf=False, use_embeddings=False,
                embedding_components=0)
    args.update(kw)
    return BaselineConfig(**args)


@pytest.mark.parametrize("model", ["lgbm", "logreg"])
def test_swapping_inputs_swaps_predictions(data, tmp_path, model) -> None:
    train, test, f_train, f_test, f_test_swapped = data
    labels = train["label"].to_numpy()
    folds = make_folds(train, 2, 0)
    both = pd.concat([f_test, f_test_swapped], ignore_index=True)
    if model == "lgbm":
        cfg = small_cfg(tmp_path)
        res = cv_lgbm(f_train, labels, folds, both, cfg.lgbm_params(), 40, 10)
    else:
        res = cv_logreg(f_train, labels, folds, both, 0.01)
    n = len(test)
    p, p_swapped = res.test[:n], res.test[n:]
    np.testing.assert_allclose(p_swapped, swap_probs(p), atol=1e-6, rtol=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-9)
    assert np.abs(p[:, 0] - p[:, 1]).max() > 1e-3  # symmetric, not constant
    assert res.oof.shape == (len(train), 3) and (res.oof > 0).all()


def test_symmetric_predict_with_asymmetric_model(data) -> None:
    _, _, _, f_test, f_test_swapped = data
    bias = lambda f: softmax(np.c_[f["chars_a"] / 1000 + 1.0, f["words_b"] / 500, np.zeros(len(f))])  # noqa: E731
    p = symmetric_predict(bias, f_test)
    q = symmetric_predict(bias, f_test_swapped)
    np.testing.assert_allclose(q, swap_probs(p), atol=1e-12)


def test_augment_keeps_swapped_twins(data) -> None:
    train, _, f_train, _, _ = data
    x, y = augment(f_train, train["label"].to_numpy())
    n = len(train)
    assert len(x) == 2 * n
    np.testing.assert_array_equal(y[n:], np.array([1, 0, 2])[y[:n]])
    np.testing.assert_array_equal(x["chars_a"].to_numpy()[n:], f_train["chars_b"].to_numpy())


def test_temperature_recovers_the_true_scale() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(20000, 3))
    p_true = softmax(logits / 2.5)
    labels = (rng.random(len(p_true))[:, None] > p_true.cumsum(axis=1)).sum(axis=1)
    T = fit_temperature(logits, labels)
    assert T == pytest.approx(2.5, rel=0.08)
    probs = softmax(logits)
    assert fit_temperature(probs, labels) == pytest.approx(T, rel=1e-3)  # probabilities are taken as log-probs
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-12)
    assert log_loss(labels, apply_temperature(probs, T)) < log_loss(labels, probs) - 0.1
    with pytest.raises(ValueError):
        apply_temperature(probs, 0.0)


def bad_test_file(path) -> None:
    """A Kaggle-layout test file with empty, identical, null, non-JSON and 1 MB fields."""
    import csv

    raw = pd.read_csv(sample_paths()[1], dtype=str).iloc[:8].copy()
    raw.loc[0, "response_a"] = '[""]'
    raw.loc[1, "response_b"] = raw.loc[1, "response_a"]
    raw.loc[2, "response_a"] = "plain text, not JSON"
    raw.loc[3, "prompt"] = "[null]"
    raw.loc[4, "response_b"] = json.dumps(["lorem ipsum " * 87_382])  # ~1 MB
    raw.loc[5, "response_a"] = '["", ""]'
    raw.loc[5, "response_b"] = "[]"
    raw.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)


@pytest.mark.slow   # a whole 02 run
def test_bad_test_file_gives_valid_submission_and_all_artifacts(tmp_path) -> None:
    test_path = tmp_path / "bad_test.csv"
    bad_test_file(test_path)
    cfg = small_cfg(tmp_path, test_path=str(test_path), compare=True)
    result = run_baseline(cfg)
    run = tmp_path / "runs" / "t"
    for name in ("config.json", "metrics.json", "oof.csv", "test_preds.csv", "submission.csv",
                 "feature_importance.png", "calibration.png", "feature_importance.csv", "lgbm_fold0_1.txt"):
        assert (run / name).stat().st_size > 0, name
    sub = validate_submission(run / "submission.csv", test_path)
    want_ids = pd.read_csv(test_path, dtype=str)["id"].tolist()
    assert sub["id"].astype(str).tolist() == want_ids
    assert np.isfinite(sub.iloc[:, 1:].to_numpy()).all()
    m = read_json(run / "metrics.json")
    for key in ("oof_log_loss", "oof_accuracy", "n_train", "seconds", "length_only_log_loss", "logreg_log_loss",
                "lgbm_log_loss", "temperature", "oof_acc_A", "oof_acc_B", "oof_acc_tie", "oof_log_loss_raw"):
        assert key in m and m[key] is not None, key
    assert m["n_train"] == 300 and m["n_test"] == 8
    oof = pd.read_csv(run / "oof.csv")
    assert list(oof.columns) == ["id", "fold", "label", "winner_model_a", "winner_model_b", "winner_tie",
                                 "identical", "empty_a", "empty_b"]   # the rule flags 05 fits its rules on
    assert len(oof) == 300 and set(oof["fold"]) == {0, 1}
    assert m["oof_log_loss"] == pytest.approx(log_loss(oof["label"], oof.iloc[:, 3:6].to_numpy()))
    preds = pd.read_csv(run / "test_preds.csv")
    assert list(preds.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert read_json(run / "config.json")["config_class"] == "BaselineConfig"
    assert set(result["comparison"]["model"]) == {"length_only", "logreg", "lgbm"}
    # the saved run predicts new rows exactly as it predicted the test file (05 and the probes use this)
    predict = load_baseline(run)
    test = load_arena(test_path)
    np.testing.assert_allclose(predict(test), preds.iloc[:, 1:].to_numpy(), atol=1e-12, rtol=0)


def test_config_checks_and_profile_defaults(tmp_path) -> None:
    cfg = BaselineConfig(output_dir=str(tmp_path))
    assert cfg.run_name == "baseline" and cfg.n_estimators == 2000 and cfg.use_embeddings is False
    assert cfg.lgbm_params()["num_threads"] == 1
    from kagglelib.run.config import make_config

    gpu = make_config(BaselineConfig, output_dir=str(tmp_path), profile="kaggle-t4")
    assert gpu.lgbm_params()["num_threads"] == 2
    with pytest.raises(ValueError, match="model"):
        BaselineConfig(output_dir=str(tmp_path), model="xgb")


def test_length_only_beats_prior_on_sample(data) -> None:
    train, _, f_train, f_test, _ = data
    labels = train["label"].to_numpy()
    folds = make_folds(train, 3, 0)
    res = cv_logreg(f_train, labels, folds, f_test, 1.0, length_columns(f_train.columns))
    prior = log_loss(labels, prior_probs(labels, len(labels)))
    assert log_loss(labels, res.oof) < prior


@pytest.mark.slow   # a whole 02 run and 05 on the WSDM layout
def test_wsdm_layout_end_to_end(tmp_path):
    """WSDM Cup parquet (plain-text cells, string ids, A/B winners only): trains and writes id,winner."""
    raw = pd.read_csv(sample_paths()[0])
    raw = raw[raw["winner_tie"] == 0].iloc[:240].reset_index(drop=True)
    first = lambda cell: str(json.loads(cell)[0] or "")  # noqa: E731
    wsdm = pd.DataFrame({"id": "w" + raw["id"].astype(str), "language": "English",
                         **{c: raw[c].map(first) for c in ("prompt", "response_a", "response_b")},
                         "winner": np.where(raw["winner_model_a"] == 1, "model_a", "model_b")})
    wsdm.iloc[:200].to_parquet(tmp_path / "train.parquet")
    wsdm.iloc[200:].drop(columns="winner").to_parquet(tmp_path / "test.parquet")   # keeps index 200..239
    cfg = small_cfg(tmp_path, train_path=str(tmp_path / "train.parquet"), test_path=str(tmp_path / "test.parquet"))
    run_baseline(cfg)
    m = read_json(cfg.run_dir / "metrics.json")
    assert m["submission_layout"] == "wsdm" and m["n_train"] == 200 and m["oof_acc_tie"] is None
    assert m["logreg_log_loss"] < np.log(3) and 0 <= m["oof_ab_accuracy"] <= 1
    sub = validate_submission(cfg.run_dir / "submission.csv", cfg.test_path)
    assert sub["id"].tolist() == wsdm["id"].iloc[200:].tolist() and set(sub["winner"]) <= {"model_a", "model_b"}
    test_preds = pd.read_csv(cfg.run_dir / "test_preds.csv")
    want = np.where(test_preds["winner_model_a"] >= test_preds["winner_model_b"], "model_a", "model_b")
    assert (sub["winner"].to_numpy() == want).all()


@pytest.mark.slow   # a whole 02 run per model, reloaded in place of the train file
@pytest.mark.parametrize("model", ["lgbm", "logreg"])
def test_saved_run_predicts_without_its_train_file(tmp_path, model) -> None:
    """The run folder alone rebuilds the predictor: train file gone, run folder moved, same probabilities."""
    import shutil

    train_copy = tmp_path / "home" / "train.csv.gz"
    train_copy.parent.mkdir()
    shutil.copy(sample_paths()[0], train_copy)
    cfg = small_cfg(tmp_path / "home", train_path=str(train_copy), model=model, compare=False)
    run_baseline(cfg)
    want = pd.read_csv(cfg.run_dir / "test_preds.csv").iloc[:, 1:].to_numpy()
    moved = shutil.move(str(tmp_path / "home"), str(tmp_path / "elsewhere"))
    run = tmp_path / "elsewhere" / "runs" / "t"
    assert not train_copy.exists() and moved
    state = read_json(run / "predictor.json")
    assert state["model"] == model and all((run / f).exists() for f in state["folds"])
    info = read_json(run / "run_info.json")
    assert info["layout"] == "kaggle" and info["provenance"]["train_file"] == "train.csv.gz"
    assert info["provenance"]["n_rows"] == 1110 and len(info["provenance"]["content_fingerprint"]) == 64
    assert not list(run.glob("*.pkl")) and not list(run.rglob("*.pickle"))
    predict = load_baseline(run)
    np.testing.assert_allclose(predict(load_arena(sample_paths()[1])), want, atol=1e-9, rtol=0)


def test_old_run_without_state_says_rerun_02(tmp_path) -> None:
    from kagglelib.inference.predictors import load_baseline

    (tmp_path / "config.json").write_text(json.dumps({"config_class": "BaselineConfig"}))
    with pytest.raises(FileNotFoundError, match="Re-run 02"):
        load_baseline(tmp_path)
