"""Feature + GBDT baseline: LightGBM / logistic regression on :mod:`kagglelib.features`, position-symmetric.

Training uses both orders of every battle (the row and its ``swap_ab`` twin share a fold), and every
prediction is ``(p(x) + swap_probs(p(swap_ab(x)))) / 2``, so swapping A and B in the input swaps the
predicted A/B probabilities exactly. Folds come from ``data.make_folds`` (grouped by prompt). A
length-only logistic regression on the same folds is the reference point; a temperature fitted on
the out-of-fold predictions calibrates the test predictions (the OOF figure uses cross-fitted
temperatures: fold k's temperature is fitted on the other folds).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..core.checks import check_settings
from ..core.io import atomic_path, save_figure, write_csv, write_json
from ..data.features import (EMBEDDING_SETTINGS, FeatureConfig, PairFeaturizer, length_columns, pair_embeddings,
                             save_featurizer, swap_features)
from ..data.folds import load_training, make_folds
from ..data.frame import is_soft, prob_frame, soft_rows, swap_labels, swap_probs, targets as target_probs
from ..data.load import load_arena
from ..models import pairwise
from ..models.tabular import clip_z, logreg_state, signed_log, symmetric_predict
from ..run.config import RunConfig, save_config
from ..run.info import provenance, write_heldout, write_run_info
from ..run.preflight import check_one_hot_folds
from ..run.folder import Run
from ..run.store import Staging
from ..scoring.calibration import apply_temperature, crossfit_temperature, fit_temperature
from ..scoring.metrics import ab_accuracy, accuracy, log_loss, prior_probs, summarise
from ..scoring.plots import feature_importance, reliability_per_class
from ..scoring.submission import validate_submission, write_submission


# OpenMP threads that spin while waiting make LightGBM ~100x slower when the cores are shared
# (measured: 300 rounds on 2k rows took 114 s with 2 spinning threads vs 0.8 s passive). Must be set
# before lightgbm's OpenMP runtime loads, hence at import time; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


MODELS = ("lgbm", "logreg")


@dataclass
class BaselineConfig(RunConfig):
    """Notebook 02 parameters: data/run contract plus feature and model knobs (defaults: cpu-sample's)."""

    run_name: str = "baseline"
    model: str = "lgbm"                    # lgbm | logreg: the model whose predictions are submitted
    n_folds: int = 5                       # StratifiedGroupKFold folds (grouped by prompt)
    seed: int = 42                         # folds, subsampling and LightGBM seed
    max_train_rows: int = 0                # 0 = all rows; else a seeded subsample (debug switch)
    use_embeddings: bool = False           # add MiniLM prompt/response cosines (one 256-token window per text)
    embedding_components: int = 8          # > 0: MiniLM over whole texts (kagglelib.pairwise, 04's cache): cosines + this many projections
    compare: bool = True                   # also fit the other model (lgbm <-> logreg) for the comparison table
    n_estimators: int = 2000               # LightGBM max boosting rounds (early stopping picks fewer)
    learning_rate: float = 0.02            # LightGBM learning rate
    num_leaves: int = 7                    # LightGBM leaves per tree (small: the sample has 1,110 rows)
    min_child_samples: int = 40            # LightGBM minimum rows per leaf
    feature_fraction: float = 0.5          # LightGBM share of features per tree
    bagging_fraction: float = 0.8          # LightGBM share of rows per tree
    lambda_l2: float = 10.0                # LightGBM L2 penalty on leaf values
    early_stopping_rounds: int = 100       # stop when the fold's validation loss stalls this long
    # LightGBM threads; on the sample's 20 fits of ~1,800 rows 1 thread took 23 s, 2 threads 361 s on 2 loaded cores
    # (same predictions): small data, more threads only contend. GPU profiles (57k rows): 2.
    num_threads: int = 1
    extra_trees: bool = True               # LightGBM random split thresholds (regularises; better CV on the sample)
    logreg_C: float = 0.002                # inverse L2 strength of the all-features logistic regression
    length_logreg_C: float = 1.0           # inverse L2 strength of the length-only logistic regression
    max_chars: int = 20000                 # per-field truncation before feature extraction
    tfidf_chars: int = 2000                # per-field truncation before TF-IDF
    use_char_tfidf: bool = True            # char 3-5-gram TF-IDF cosines
    cache_dir: str = ""                    # embedding cache; "" = <output_dir>/cache/embeddings

    PROFILE_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "kaggle-t4": {"use_embeddings": True, "embedding_components": 0, "n_estimators": 5000, "learning_rate": 0.03,
                      "num_threads": 2},
        "colab-a100": {"use_embeddings": True, "embedding_components": 0, "n_estimators": 5000, "learning_rate": 0.03,
                       "num_threads": 2},
    }

    SETTING_RULES: ClassVar[dict[str, str]] = {
        "n_folds": "int>=2", "seed": "int>=0", "max_train_rows": "int>=0", "n_estimators": "int>=1",
        "learning_rate": "num>0", "num_leaves": "int>=2", "min_child_samples": "int>=1", "feature_fraction": "(0,1]",
        "bagging_fraction": "(0,1]", "lambda_l2": "num>=0", "early_stopping_rounds": "int>=1", "num_threads": "int>=0",
        "logreg_C": "num>0", "length_logreg_C": "num>0", "max_chars": "int>=1", "tfidf_chars": "int>=1",
        "embedding_components": "int>=0"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        check_settings(self, self.SETTING_RULES)

    @property
    def embedding_cache(self) -> Path:
        """Where MiniLM embeddings are cached: ``cache_dir``, else ``<output_dir>/cache/embeddings``."""
        return Path(self.cache_dir) if self.cache_dir else Path(self.output_dir) / "cache" / "embeddings"

    def feature_config(self) -> FeatureConfig:
        """The feature settings of this run."""
        return FeatureConfig(max_chars=self.max_chars, tfidf_chars=self.tfidf_chars,
                             use_char_tfidf=self.use_char_tfidf)

    def lgbm_params(self) -> dict[str, Any]:
        """LightGBM parameters (multiclass, strongly regularised, deterministic)."""
        return {"objective": "multiclass", "num_class": 3, "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
                "bagging_freq": 1, "lambda_l2": self.lambda_l2, "extra_trees": self.extra_trees, "max_bin": 63,
                "num_threads": self.num_threads,
                "seed": self.seed, "deterministic": True, "force_row_wise": True, "verbose": -1}


@dataclass
class CVResult:
    """Out-of-fold and fold-averaged test probabilities of one model, plus per-feature importance."""

    name: str
    oof: np.ndarray
    test: np.ndarray
    importance: pd.Series | None = None
    best_iterations: list[int] = field(default_factory=list)
    seconds: float = 0.0


def augment(feats: pd.DataFrame, labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows followed by their A/B-swapped twins (features and labels: integers or (n, 3) targets)."""
    labels = np.asarray(labels)
    swapped = swap_probs(labels) if labels.ndim == 2 else swap_labels(labels)
    return pd.concat([feats, swap_features(feats)], ignore_index=True), np.concatenate([labels, swapped])


def expand_soft(feats: pd.DataFrame, targets: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Soft targets for a hard-label learner: one row per class with probability > 0, weighted by it.

    LightGBM's multiclass objective and sklearn's LogisticRegression take only integer labels; weighted
    copies give the same expected loss (sum_c t_c * -log p_c), and a one-hot row stays one row of weight 1.
    """
    t = np.asarray(targets, dtype=np.float64)
    rows, cls = np.nonzero(t > 0)
    order = np.lexsort((cls, rows))   # keep file order, classes within a row
    rows, cls = rows[order], cls[order]
    return feats.iloc[rows].reset_index(drop=True), cls.astype(np.int64), t[rows, cls]


def three_class(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n, 3) probabilities from a classifier that saw only some labels (e.g. WSDM data has no ties)."""
    out = np.zeros((len(probs), 3))
    out[:, np.asarray(classes, dtype=np.int64)] = probs
    return out


def cv_logreg(feats: pd.DataFrame, labels: np.ndarray, folds: np.ndarray, test_feats: pd.DataFrame,
              C: float = 0.05, columns: list[str] | None = None, name: str = "logreg",
              model_dir: Path | None = None, targets: np.ndarray | None = None) -> CVResult:
    """StandardScaler + LogisticRegression on signed-log features, swap-augmented, per fold (saved as JSON).

    ``targets``: (n, 3) soft targets, trained as weighted expanded rows (:func:`expand_soft`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler
    from threadpoolctl import threadpool_limits

    start = time.monotonic()
    columns = list(columns or feats.columns)
    feats, test_feats = feats[columns], test_feats[columns]
    oof = np.zeros((len(feats), 3))
    test = np.zeros((len(test_feats), 3))
    coefs = []
    for k in np.unique(folds):
        tr = folds != k
        x, y = augment(feats[tr].reset_index(drop=True), labels[tr] if targets is None else targets[tr])
        weight = None
        if targets is not None:
            x, y, weight = expand_soft(x, y)
        model = make_pipeline(FunctionTransformer(signed_log), StandardScaler(), FunctionTransformer(clip_z),
                              LogisticRegression(C=C, max_iter=2000))
        # Multi-threaded BLAS on these small matrices only spins; measured 15x slower on shared cores.
        with threadpool_limits(1, user_api="blas"):
            fit_kw = {} if weight is None else {"logisticregression__sample_weight": weight}
            model.fit(x.to_numpy(np.float64), y, **fit_kw)
        predict = lambda f: three_class(model.predict_proba(f.to_numpy(np.float64)), model.classes_)  # noqa: E731
        oof[~tr] = symmetric_predict(predict, feats[~tr])
        test += symmetric_predict(predict, test_feats) / len(np.unique(folds))
        coefs.append(np.abs(model[-1].coef_).mean(axis=0))
        if model_dir is not None:
            write_json(logreg_state(model, columns), model_dir / f"logreg_fold{k}.json")
    importance = pd.Series(np.mean(coefs, axis=0), index=columns).sort_values(ascending=False)
    return CVResult(name, oof, test, importance, seconds=time.monotonic() - start)


def cv_lgbm(feats: pd.DataFrame, labels: np.ndarray, folds: np.ndarray, test_feats: pd.DataFrame,
            params: dict[str, Any], n_estimators: int = 2000, early_stopping_rounds: int = 100,
            model_dir: Path | None = None, targets: np.ndarray | None = None) -> CVResult:
    """LightGBM multiclass per fold on swap-augmented rows; the scored fold never picks the number of rounds.

    For held-out fold k, each other fold j early-stops a model trained on the remaining folds (grouped by prompt
    like every fold), and fold k is predicted by the mean of those K - 1 models. (Refitting one model on all of
    k's training folds for 1.25x their mean rounds scored worse on the sample: 1.0379 vs 1.0360 out of fold, bench/baseline_variants.py.) ``targets``: (n, 3) soft targets, trained as weighted expanded rows (:func:`expand_soft`).
    """
    import lightgbm as lgb

    start = time.monotonic()
    oof = np.zeros((len(feats), 3))
    test = np.zeros((len(test_feats), 3))
    gains, best = [], []
    ks = np.unique(folds)
    y = labels if targets is None else targets

    def dataset(rows: np.ndarray, reference: Any = None) -> Any:
        x, t = augment(feats[rows].reset_index(drop=True), y[rows])
        w = None
        if targets is not None:
            x, t, w = expand_soft(x, t)
        return lgb.Dataset(x, t, weight=w, reference=reference, free_raw_data=True)

    for k in ks:
        tr = folds != k
        members = []
        # Inner CV: each other fold early-stops a model trained on the remaining ones. With 2 folds there is no
        # third: the training fold's odd rows stop the model fitted on its even rows (documented fallback).
        inner = [(j, folds == j) for j in ks[ks != k]] if len(ks) > 2 else \
            [(1 - k, tr & (np.cumsum(tr) % 2 == 1))]
        for j, stop in inner:
            dfit = dataset(tr & ~stop)
            booster = lgb.train(params, dfit, num_boost_round=n_estimators, valid_sets=[dataset(stop, dfit)],
                                callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)])
            it = int(booster.best_iteration or n_estimators)
            best.append(it)
            members.append((j, booster, it))
            gains.append(booster.feature_importance("gain", iteration=it))
            if model_dir is not None:
                booster.save_model(str(model_dir / f"lgbm_fold{k}_{j}.txt"), num_iteration=it)
        predict = lambda f, m=members: np.mean([b.predict(f, num_iteration=it) for _, b, it in m], axis=0)  # noqa: E731
        oof[~tr] = symmetric_predict(predict, feats[~tr])
        test += symmetric_predict(predict, test_feats) / len(ks)
    importance = pd.Series(np.mean(gains, axis=0), index=feats.columns).sort_values(ascending=False)
    return CVResult("lgbm", oof, test, importance, best, time.monotonic() - start)


def build_features(train: pd.DataFrame, test: pd.DataFrame, cfg: BaselineConfig,
                   save_to: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature tables of train and test; vocabularies fitted (without labels) on the train texts (saved to ``save_to``)."""
    featurizer = PairFeaturizer(cfg.feature_config()).fit(train)
    if save_to is not None:
        save_featurizer(featurizer, save_to)
    emb_tr = emb_te = None
    if cfg.use_embeddings:
        settings = {k: EMBEDDING_SETTINGS[k] for k in ("max_tokens", "max_chars")}   # saved for the predictor
        emb_tr = pair_embeddings(train, cfg.embedding_cache, **settings)
        emb_te = pair_embeddings(test, cfg.embedding_cache, **settings)
    feats, test_feats = featurizer.transform(train, emb_tr), featurizer.transform(test, emb_te)
    if cfg.embedding_components:   # whole-text embeddings, projected on directions of the train texts (no labels)
        encoder = pairwise.load_encoder()
        kw = {**pairwise.CHUNKED_SETTINGS, "encoder": encoder, "progress": False}
        emb = pairwise.embed_frame(train, cfg.embedding_cache, **kw)
        comp = pairwise.fit_components(emb, cfg.embedding_components)
        if save_to is not None:
            with atomic_path(Path(save_to) / "components.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, comp, allow_pickle=False)
        feats = pd.concat([feats, pairwise.embedding_features(emb, comp)], axis=1)
        test_emb = pairwise.embed_frame(test, cfg.embedding_cache, **kw)
        test_feats = pd.concat([test_feats, pairwise.embedding_features(test_emb, comp)], axis=1)
    return feats, test_feats


def subsample(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A seeded subsample of at most ``max_rows`` rows, kept in file order (0 = all rows)."""
    if not max_rows or max_rows >= len(df):
        return df
    keep = np.sort(np.random.default_rng(seed).choice(len(df), size=max_rows, replace=False))
    return df.iloc[keep].reset_index(drop=True)


def run_baseline(cfg: BaselineConfig) -> dict[str, Any]:
    """Features -> CV (length-only LR, LogReg, LightGBM) -> temperature -> artifacts in ``cfg.run_dir``.

    The run is written in a staging folder and committed atomically with its manifest (:mod:`kagglelib.runs`).
    """
    with Run.create(cfg.output_dir, cfg.run_name) as stage:
        out = _run_baseline(cfg, stage)
    return {**out, "run_dir": stage.final}


def _run_baseline(cfg: BaselineConfig, stage: Staging) -> dict[str, Any]:
    start = time.monotonic()
    run_dir = stage.path
    save_config(cfg, run_dir, notebook="02_baseline")
    loaded = load_training(cfg.train_path)   # one file, or several de-duplicated across files
    layout = loaded.attrs["load_report"].layout   # "wsdm": A/B-only labels, submission id,winner
    train = subsample(loaded, cfg.max_train_rows, cfg.seed)
    test = load_arena(cfg.test_path)
    if "label" not in train.columns:
        raise ValueError(f"{cfg.train_path}: no winner columns, cannot train")
    labels = train["label"].to_numpy()
    folds = make_folds(train, cfg.n_folds, cfg.seed)
    check_one_hot_folds(train, folds, range(cfg.n_folds), cfg.train_path)   # before any feature is built
    # Soft rows (pseudo-labels) train as weighted expanded rows; metrics and temperature use the one-hot rows.
    soft = is_soft(train)
    targets = target_probs(train) if soft else None
    real = ~soft_rows(targets) if soft else np.ones(len(train), dtype=bool)

    t0 = time.monotonic()
    feats, test_feats = build_features(train, test, cfg, save_to=run_dir / "featurizer")
    seconds_features = time.monotonic() - t0

    results: dict[str, CVResult] = {}
    results["length_only"] = cv_logreg(feats, labels, folds, test_feats, cfg.length_logreg_C,
                                       length_columns(feats.columns), name="length_only", targets=targets)
    if cfg.model == "logreg" or cfg.compare:
        results["logreg"] = cv_logreg(feats, labels, folds, test_feats, cfg.logreg_C, model_dir=run_dir,
                                      targets=targets)
    if cfg.model == "lgbm" or cfg.compare:
        results["lgbm"] = cv_lgbm(feats, labels, folds, test_feats, cfg.lgbm_params(), cfg.n_estimators,
                                  cfg.early_stopping_rounds, model_dir=run_dir, targets=targets)
    main = results[cfg.model]

    temperature = fit_temperature(main.oof[real], labels[real])
    oof_cal = apply_temperature(main.oof, temperature)
    oof_cal[real] = crossfit_temperature(main.oof[real], labels[real], folds[real])
    test_cal = apply_temperature(main.test, temperature)
    all_rows = len(train)
    if soft:   # the figures below are on the rows with real (one-hot) labels
        train_all, folds_all, oof_all = train, folds, oof_cal
        train, labels, folds, oof_cal = train[real].reset_index(drop=True), labels[real], folds[real], oof_cal[real]
        results = {k: dataclasses.replace(r, oof=r.oof[real]) for k, r in results.items()}
        main = results[cfg.model]

    m: dict[str, Any] = {"model": cfg.model, "n_train": all_rows, "n_test": len(test),
                         "n_features": feats.shape[1], "n_folds": cfg.n_folds, "n_soft_rows": int((~real).sum()),
                         "train_report": loaded.attrs.get("train_report")}
    m.update({f"oof_{k}": v for k, v in summarise(labels, oof_cal).items()})
    m["oof_log_loss_raw"] = log_loss(labels, main.oof)
    m["oof_accuracy_raw"] = accuracy(labels, main.oof)
    m["oof_log_loss_temp_insample"] = log_loss(labels, apply_temperature(main.oof, temperature))
    m["oof_ab_accuracy"] = ab_accuracy(labels, oof_cal)   # the WSDM Cup metric (non-tie rows)
    m["submission_layout"] = layout
    m["data_warnings"] = loaded.attrs["load_report"].warnings   # e.g. no ties at all in the train file
    m["temperature"] = temperature
    m["prior_log_loss"] = log_loss(labels, prior_probs(labels, len(labels)))
    for name, res in results.items():
        m[f"{name}_log_loss"] = log_loss(labels, res.oof)
        m[f"{name}_accuracy"] = accuracy(labels, res.oof)
        m[f"{name}_seconds"] = res.seconds
    if main.best_iterations:
        m["best_iterations"] = main.best_iterations
    m["seconds_features"] = seconds_features

    # Soft rows keep their OOF predictions, flagged, so blends can leave them out.
    oof_df = write_heldout(stage.oof_file, *((train_all, oof_all, folds_all) if soft else (train, oof_cal, folds)))
    test_df = prob_frame(test["id"], test_cal)
    write_csv(test_df, stage.test_preds_file)
    sub_path = write_submission(test["id"], test_cal, stage.submission_file, layout)
    validate_submission(sub_path, cfg.test_path)
    importance = main.importance if main.importance is not None else pd.Series(dtype=float)
    write_csv(importance.rename_axis("feature").reset_index(name="importance"), run_dir / "feature_importance.csv")

    figures = {"importance": feature_importance(importance, title=f"{cfg.model} feature importance "
                                             f"({'gain' if cfg.model == 'lgbm' else '|coef|'})"),
               "reliability": reliability_per_class(labels, {"raw": main.oof, "temperature": oof_cal})}
    save_figure(figures["importance"], run_dir / "feature_importance.png")
    save_figure(figures["reliability"], run_dir / "calibration.png")
    import matplotlib.pyplot as plt

    for f in figures.values():  # closed so a notebook shows each once, when it displays the returned figure
        plt.close(f)
    m["seconds"] = time.monotonic() - start
    write_json(m, stage.metrics_file)
    # Everything 05 needs to predict new rows from this folder alone (no train file, no stored path followed).
    write_json({"format": 1, "model": cfg.model, "featurizer": "featurizer", "temperature": temperature,
                "folds": sorted(p.name for p in run_dir.glob("lgbm_fold*.txt")) if cfg.model == "lgbm"
                else [f"logreg_fold{k}.json" for k in np.unique(folds)],
                "chunked_embeddings": ({**pairwise.CHUNKED_SETTINGS, "components": "components.npy"}
                                       if cfg.embedding_components else None),
                "feature_columns": list(feats.columns), "embeddings": EMBEDDING_SETTINGS if cfg.use_embeddings else None},
               stage.predictor_file)
    write_run_info(run_dir, "baseline", layout, {**provenance(loaded, cfg.train_path),
                                                 "max_train_rows": cfg.max_train_rows, "seed": cfg.seed},
                   packages=[EMBEDDING_SETTINGS["package"]] if cfg.use_embeddings or cfg.embedding_components else [])
    comparison = pd.DataFrame([{"model": name, "oof_log_loss": m[f"{name}_log_loss"],
                                "oof_accuracy": m[f"{name}_accuracy"], "seconds": res.seconds}
                               for name, res in results.items()])
    return {"metrics": m, "run_dir": run_dir, "oof": oof_df, "test_preds": test_df, "importance": importance,
            "comparison": comparison, "figures": figures, "features": feats}
