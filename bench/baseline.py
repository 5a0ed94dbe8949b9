"""Benchmark the feature + GBDT baseline at competition scale on a resampled copy of the real sample.

Builds ``--rows`` rows (default 57,477, the Kaggle train size) by resampling the bundled sample's
rows with replacement (real length distribution; every resampled row gets a new unique id and, unless
``--allow-repeats``, a short row tag on each text so no text repeats, as in the real data), then
times feature extraction and 5-fold training (length-only LR, LogReg, LightGBM) and prints rows/s
and peak memory (``ru_maxrss``). Target: under 15 minutes and 8 GB on 2 cores.

    python bench/baseline.py [--rows 57477] [--n-folds 5] [--no-logreg] [--allow-repeats]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kagglelib.scoring.metrics import log_loss
from kagglelib.training.baseline import BaselineConfig, cv_lgbm, cv_logreg
from kagglelib.data.folds import make_folds
from kagglelib.data.load import load_arena
from kagglelib.data.features import PairFeaturizer, length_columns
from kagglelib.core.paths import sample_paths


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resample(df, rows: int, seed: int):
    """``rows`` rows drawn with replacement from ``df``, with fresh unique ids."""
    idx = np.random.default_rng(seed).integers(0, len(df), size=rows)
    out = df.iloc[idx].reset_index(drop=True)
    out["id"] = np.arange(10_000_000, 10_000_000 + rows, dtype=np.int64)
    return out


def make_distinct(df):
    """Tag every last turn with its row number so no text repeats (the featurizer dedupes texts)."""
    out = df.copy()
    for col in ("prompt", "response_a", "response_b"):
        out[col] = [turns[:-1] + [f"{turns[-1]} r{i}"] if turns else [f"r{i}"] for i, turns in enumerate(df[col])]
    return out


def main() -> None:
    """Run the benchmark and print one JSON object of figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=57477, help="synthetic train rows")
    ap.add_argument("--n-folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-logreg", action="store_true", help="skip the all-features logistic regression")
    ap.add_argument("--allow-repeats", action="store_true",
                    help="keep resampled texts identical (the featurizer then vectorises each distinct text once)")
    args = ap.parse_args()

    t_all = time.time()
    train_path, test_path = sample_paths()
    train = resample(load_arena(train_path), args.rows, args.seed)
    folds = make_folds(train, args.n_folds, args.seed)  # by the original prompts: a row's copies share a fold
    if not args.allow_repeats:
        train = make_distinct(train)
    test = load_arena(test_path)
    cfg = BaselineConfig(output_dir="/tmp/bench_baseline", run_name="bench", n_folds=args.n_folds,
                                  seed=args.seed, use_embeddings=False)
    fig: dict[str, float] = {"rows": len(train), "n_folds": args.n_folds}

    t0 = time.time()
    featurizer = PairFeaturizer(cfg.feature_config()).fit(train)
    fig["seconds_feature_fit"] = time.time() - t0
    t1 = time.time()
    feats = featurizer.transform(train)
    test_feats = featurizer.transform(test)
    fig["seconds_feature_transform"] = time.time() - t1
    fig["seconds_features"] = time.time() - t0
    fig["feature_rows_per_s"] = len(train) / fig["seconds_features"]
    fig["n_features"] = feats.shape[1]
    fig["peak_rss_mb_after_features"] = peak_rss_mb()
    print(f"features: {fig['seconds_features']:.1f}s ({fig['feature_rows_per_s']:.0f} rows/s), "
          f"peak {fig['peak_rss_mb_after_features']:.0f} MB", flush=True)

    labels = train["label"].to_numpy()
    t2 = time.time()
    res = cv_logreg(feats, labels, folds, test_feats, cfg.length_logreg_C, length_columns(feats.columns),
                             name="length_only")
    fig["length_only_seconds"] = res.seconds
    fig["length_only_log_loss"] = log_loss(labels, res.oof)
    if not args.no_logreg:
        res = cv_logreg(feats, labels, folds, test_feats, cfg.logreg_C)
        fig["logreg_seconds"] = res.seconds
        fig["logreg_log_loss"] = log_loss(labels, res.oof)
    print(f"logistic regressions: {time.time() - t2:.1f}s", flush=True)
    res = cv_lgbm(feats, labels, folds, test_feats, cfg.lgbm_params(), cfg.n_estimators,
                           cfg.early_stopping_rounds)
    fig["lgbm_seconds"] = res.seconds
    fig["lgbm_best_iterations"] = res.best_iterations  # type: ignore[assignment]
    fig["lgbm_log_loss"] = log_loss(labels, res.oof)
    fig["seconds_training"] = time.time() - t2
    fig["train_rows_per_s"] = len(train) * args.n_folds / fig["seconds_training"]
    fig["seconds_total"] = time.time() - t_all
    fig["peak_rss_mb"] = peak_rss_mb()
    # Log losses here are not quality figures: resampled duplicates make them meaningless.
    print(json.dumps(fig, indent=1))


if __name__ == "__main__":
    main()
