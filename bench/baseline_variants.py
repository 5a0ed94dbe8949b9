"""02's LightGBM on the bundled sample: thread count, a refit variant, fixed-setting variants, LightGBM seeds averaged,
02 without its MiniLM columns, a LightGBM + logistic regression average at fixed weights and cross-fitted (issue 21's
attempts at 02 <= 1.035; every fold, out of fold, raw probabilities unless it says cross-fitted).

    python bench/baseline_variants.py [--output-dir outputs]

Features are built once (the MiniLM embeddings come from ``<output-dir>/cache`` when 02 ran before). The fixed
variants and the average are looked at on the rows they score, so none is adopted as a default: they only say how
far such changes move the figure.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kagglelib.data.folds import make_folds  # noqa: E402
from kagglelib.data.load import load_arena  # noqa: E402
from kagglelib.scoring.ensemble import crossfit_blend  # noqa: E402
from kagglelib.scoring.metrics import log_loss  # noqa: E402
from kagglelib.training.baseline import (BaselineConfig, augment, build_features, cv_lgbm, cv_logreg,  # noqa: E402
                                         symmetric_predict)

VARIANTS = {"learning_rate 0.01": {"learning_rate": 0.01}, "num_leaves 4": {"num_leaves": 4},
            "feature_fraction 0.3": {"feature_fraction": 0.3}, "min_child_samples 80": {"min_child_samples": 80},
            "lambda_l2 30": {"lambda_l2": 30.0}}


def refit_oof(feats, labels, folds, params, cfg) -> np.ndarray:
    """Each fold: the inner early-stopped rounds, then one model on all its training folds for 1.25x their mean."""
    import lightgbm as lgb

    oof = np.zeros((len(feats), 3))
    ks = np.unique(folds)
    for k in ks:
        tr = folds != k
        its = []
        for j in ks[ks != k]:
            stop = folds == j
            x, y = augment(feats[tr & ~stop].reset_index(drop=True), labels[tr & ~stop])
            xs, ys = augment(feats[stop].reset_index(drop=True), labels[stop])
            fit = lgb.Dataset(x, y)
            b = lgb.train(params, fit, num_boost_round=cfg.n_estimators, valid_sets=[lgb.Dataset(xs, ys, reference=fit)],
                          callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)])
            its.append(b.best_iteration)
        x, y = augment(feats[tr].reset_index(drop=True), labels[tr])
        full = lgb.train(params, lgb.Dataset(x, y), num_boost_round=int(np.mean(its) * 1.25))
        oof[~tr] = symmetric_predict(full.predict, feats[~tr])
    return oof


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", default="outputs")
    args = ap.parse_args()
    cfg = BaselineConfig(output_dir=args.output_dir)
    train = load_arena(cfg.train_path)
    test = load_arena(cfg.test_path).head(5)
    t = time.monotonic()
    feats, test_feats = build_features(train, test, cfg)
    print(f"features: {feats.shape}, {time.monotonic() - t:.0f} s")
    labels = train["label"].to_numpy()
    folds = make_folds(train, cfg.n_folds, cfg.seed)
    params = cfg.lgbm_params()
    runs = {}
    for threads in (1, 2):
        t = time.monotonic()
        runs[threads] = cv_lgbm(feats, labels, folds, test_feats, {**params, "num_threads": threads},
                                cfg.n_estimators, cfg.early_stopping_rounds)
        print(f"02 LightGBM, {threads} thread(s): {log_loss(labels, runs[threads].oof):.4f} "
              f"in {time.monotonic() - t:.0f} s")
    print(f"  max |diff| 1 vs 2 threads: {np.abs(runs[1].oof - runs[2].oof).max():.2e}")
    base = runs[1].oof
    print(f"refit on all training folds: {log_loss(labels, refit_oof(feats, labels, folds, params, cfg)):.4f}")
    for name, over in VARIANTS.items():
        rounds = 4000 if "learning_rate" in over else cfg.n_estimators
        r = cv_lgbm(feats, labels, folds, test_feats, {**params, **over}, rounds, cfg.early_stopping_rounds)
        print(f"fixed {name}: {log_loss(labels, r.oof):.4f}")
    plain = [c for c in feats.columns if not c.startswith("cemb_")]
    r = cv_lgbm(feats[plain], labels, folds, test_feats[plain], params, cfg.n_estimators, cfg.early_stopping_rounds)
    print(f"without the whole-text MiniLM columns (cemb_*, {len(feats.columns) - len(plain)}): {log_loss(labels, r.oof):.4f}")
    seeds = [base] + [cv_lgbm(feats, labels, folds, test_feats, {**params, "seed": cfg.seed + s}, cfg.n_estimators,
                              cfg.early_stopping_rounds).oof for s in (1, 2)]
    print(f"mean of 3 LightGBM seeds: {log_loss(labels, np.mean(seeds, axis=0)):.4f}")
    lr = cv_logreg(feats, labels, folds, test_feats, cfg.logreg_C)
    for w in (0.1, 0.2, 0.3):
        print(f"(1 - {w}) LightGBM + {w} logistic regression: {log_loss(labels, (1 - w) * base + w * lr.oof):.4f} "
              "(weight looked at on the scored rows)")
    # Honest versions: weights and temperature fitted on the other rows (as 05 does), against a temperature alone.
    print(f"cross-fitted LightGBM + logistic regression blend: {log_loss(labels, crossfit_blend([base, lr.oof], labels)):.4f}"
          f" vs cross-fitted temperature alone {log_loss(labels, crossfit_blend([base], labels)):.4f}")


if __name__ == "__main__":
    main()
