"""Post-hoc temperature scaling of class probabilities (or logits): one scalar T fitted by log loss."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from ..data.frame import LABEL_NAMES
from .metrics import EPS, log_loss


def _as_logits(x: np.ndarray) -> np.ndarray:
    """Log-probabilities if ``x`` rows are probabilities (in [0, 1], summing to 1), else ``x`` as logits."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (n, classes) array, got shape {x.shape}")
    is_probs = (x >= 0).all() and (x <= 1).all() and np.allclose(x.sum(axis=1), 1.0, atol=1e-4)
    return np.log(np.clip(x, EPS, 1.0)) if is_probs else x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def apply_temperature(logits_or_probs: np.ndarray, T: float) -> np.ndarray:
    """Probabilities ``softmax(logits / T)``; probabilities are turned into log-probabilities first."""
    if not T > 0:
        raise ValueError(f"temperature must be positive, got {T}")
    return softmax(_as_logits(logits_or_probs) / T)


def fit_temperature(logits_or_probs: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the mean log loss of ``apply_temperature(x, T)`` on ``labels``."""
    z = _as_logits(logits_or_probs)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(z):
        raise ValueError(f"fit_temperature: {len(y)} labels but {len(z)} rows")

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    res = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def crossfit_temperature(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Probabilities calibrated per fold with the temperature fitted on the other folds (an honest figure)."""
    out = np.zeros_like(probs, dtype=np.float64)
    for k in np.unique(folds):
        held = folds == k
        out[held] = apply_temperature(probs[held], fit_temperature(probs[~held], labels[~held]))
    return out


def reliability_table(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per class and quantile bin: mean predicted probability vs observed frequency."""
    rows = []
    for j, name in enumerate(LABEL_NAMES):
        p = probs[:, j]
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
        bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
        for b in np.unique(bins):
            m = bins == b
            rows.append({"class": name, "bin": int(b), "n": int(m.sum()), "mean_pred": float(p[m].mean()),
                         "observed": float(np.mean(labels[m] == j))})
    return pd.DataFrame(rows)


def confidence_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Rows binned by top-class confidence (equal-width bins on [0, 1]): rows, mean confidence, accuracy per bin."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "confidence": conf, "accuracy": correct.astype(np.float64)})
    table = frame.groupby("bin").agg(n=("bin", "size"), confidence=("confidence", "mean"), accuracy=("accuracy", "mean"))
    return table.reset_index()


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the top-class confidence: the row-weighted mean of |accuracy - confidence| over the bins."""
    t = confidence_bins(labels, probs, n_bins)
    return float((t["n"] * (t["accuracy"] - t["confidence"]).abs()).sum() / t["n"].sum())


def calibration_report(labels: np.ndarray, probs: np.ndarray, n_folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Log loss and ECE before/after temperature scaling; the 'after' figures are cross-fitted (honest)."""
    scaled = crossfit_temperature(probs, labels, np.random.default_rng(seed).integers(0, n_folds, len(labels)))
    return {"log_loss": log_loss(labels, probs), "ece": expected_calibration_error(labels, probs),
            "temperature": fit_temperature(probs, labels), "log_loss_scaled": log_loss(labels, scaled),
            "ece_scaled": expected_calibration_error(labels, scaled)}
