"""Blending runs: weights fitted on validation predictions, NaN-aware blending, checked post-processing rules."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ..data.frame import WINNER_COLUMNS, rule_masks, swap_labels, swap_probs
from .calibration import apply_temperature, fit_temperature
from .metrics import log_loss


PROB_COLUMNS = list(WINNER_COLUMNS)


def read_predictions(path: str, ids: pd.Series | None = None) -> pd.DataFrame:
    """A predictions CSV (id + the 3 winner columns, maybe label/fold), indexed by id as str (read as text:
    a zero-padded id such as ``007`` stays ``007``)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in df.columns.drop("id", errors="ignore"):
        try:
            df[col] = pd.to_numeric(df[col].replace("", np.nan))
        except ValueError:   # a text column: kept as read
            pass
    missing = [c for c in ["id", *PROB_COLUMNS] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    df["id"] = df["id"].astype(str)
    return df.set_index("id")


def fit_weights(probs: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the log loss of the weighted average."""
    k = len(probs)
    if k == 1:
        return np.ones(1)
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])

    def loss(z: np.ndarray) -> float:
        w = np.exp(z - z.max())
        w /= w.sum()
        return log_loss(labels, np.tensordot(w, stack, axes=1))

    res = minimize(loss, np.zeros(k), method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-8, "maxiter": 2000})
    w = np.exp(res.x - res.x.max())
    return w / w.sum()


def blend(probs: list[np.ndarray], weights: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Weighted average per row over the runs that have a (non-NaN) prediction there, weights renormalised.

    Rows no run predicted get ``fallback`` (e.g. the class prior); without one they raise. A row is "not
    predicted" only when all three values are NaN (a chunk the time budget skipped); any other non-finite or
    invalid row (partly NaN, inf, negative, not summing to 1: fp16 overflow) raises instead of being skipped.
    """
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probs])          # (runs, n, 3)
    check_probabilities(stack)
    have = np.isfinite(stack).all(axis=2)                                        # (runs, n)
    w = np.asarray(weights, dtype=np.float64)[:, None] * have
    total = w.sum(axis=0)
    out = np.einsum("rn,rnc->nc", w, np.nan_to_num(stack)) / np.where(total > 0, total, 1)[:, None]
    empty = total <= 0
    if empty.any():
        if fallback is None:
            raise ValueError(f"{int(empty.sum())} rows have no prediction from any run (first row {int(np.argmax(empty))})")
        out[empty] = fallback
    return out


def check_probabilities(stack: np.ndarray) -> None:
    """Raise on rows of a (runs, n, 3) stack that are neither valid probabilities nor entirely NaN."""
    missing = np.isnan(stack).all(axis=2)
    finite = np.isfinite(stack).all(axis=2)
    with np.errstate(invalid="ignore"):
        valid = finite & (stack >= 0).all(axis=2) & (np.abs(stack.sum(axis=2) - 1) < 1e-3)
    bad = ~(valid | missing)
    if bad.any():
        run, row = np.argwhere(bad)[0]
        raise ValueError(f"{int(bad.sum())} predicted rows are not valid probabilities (NaN/inf/negative/not summing "
                         f"to 1; first: run {int(run)}, row {int(row)}: {stack[run, row].tolist()}); refusing to blend "
                         "them (a NaN row from fp16 overflow must not fall back silently to other runs)")


def _require_finite(probs: list[np.ndarray], what: str) -> None:
    for k, p in enumerate(probs):
        bad = np.flatnonzero(~np.isfinite(np.asarray(p, dtype=np.float64)).all(axis=1))
        if len(bad):
            raise ValueError(f"{what}: run {k} has {len(bad)} non-finite rows (first rows {bad[:10].tolist()}); "
                             "ensemble weights and temperature are only fitted on complete predictions")


@dataclass
class Rules:
    """Post-processing replacements accepted on validation data (empty when none helped)."""

    identical: np.ndarray | None = None    # (A, B, tie) for rows whose two responses are the same text
    one_empty: np.ndarray | None = None    # (non-empty side wins, empty side wins, tie) when exactly one side is empty
    report: list[dict] = field(default_factory=list)


def _loo_distribution(labels: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Leave-one-out smoothed label distribution for each row (honest estimate of the rule's loss)."""
    counts = np.bincount(labels, minlength=3).astype(np.float64)
    loo = counts[None, :] - np.eye(3)[labels]
    return (loo + alpha) / (loo.sum(axis=1, keepdims=True) + 3 * alpha)


def fit_rules(df: pd.DataFrame | dict[str, np.ndarray], probs: np.ndarray, labels: np.ndarray,
              min_rows: int = 5) -> Rules:
    """Accept a rule only if its leave-one-out log loss on the matching validation rows beats the model's.

    ``df``: the rows, or their :func:`rule_masks` (as stored in a run's held-out predictions file).
    """
    masks = df if isinstance(df, dict) else rule_masks(df)
    labels = np.asarray(labels, dtype=np.int64)
    rules = Rules()
    # identical: symmetric by construction (A and B share their mass)
    cases = {"identical": (masks["identical"], labels),
             # one side empty, mapped to (non-empty wins, empty wins, tie): A empty flips A/B
             "one_empty": (masks["empty_a"] | masks["empty_b"],
                           np.where(masks["empty_a"], swap_labels(labels), labels))}
    for name, (mask, mapped) in cases.items():
        n = int(mask.sum())
        row = {"rule": name, "rows": n, "accepted": False}
        if n >= min_rows:
            loo = _loo_distribution(mapped[mask])
            if name == "identical":
                loo[:, :2] = loo[:, :2].mean(axis=1, keepdims=True)
            else:
                loo = np.where(masks["empty_a"][mask][:, None], swap_probs(loo), loo)
            model_loss = log_loss(labels[mask], probs[mask])
            rule_loss = log_loss(labels[mask], loo)
            row.update(model_log_loss=model_loss, rule_log_loss=rule_loss, accepted=rule_loss < model_loss)
            if row["accepted"]:
                dist = (np.bincount(mapped[mask], minlength=3) + 1.0) / (n + 3.0)
                if name == "identical":
                    dist[:2] = dist[:2].mean()
                setattr(rules, name, dist)
        rules.report.append(row)
    return rules


def apply_rules(df: pd.DataFrame | dict[str, np.ndarray], probs: np.ndarray, rules: Rules) -> np.ndarray:
    """Replace the predictions of rows matching an accepted rule (rows or their masks); symmetric under swap_ab."""
    out = np.array(probs, dtype=np.float64, copy=True)
    masks = df if isinstance(df, dict) else rule_masks(df)
    if rules.identical is not None:
        out[masks["identical"]] = rules.identical
    if rules.one_empty is not None:
        out[masks["empty_b"]] = rules.one_empty
        out[masks["empty_a"]] = swap_probs(rules.one_empty)
    return out


def fit_blend(probs: list[np.ndarray], labels: np.ndarray, ensemble: str = "fit",
              calibrate: bool = True) -> tuple[np.ndarray, float]:
    """Blend weights (fitted or equal) and a temperature for the blend (1.0 when not calibrating)."""

    _require_finite(probs, "validation predictions")
    weights = fit_weights(probs, labels) if ensemble == "fit" else np.full(len(probs), 1 / len(probs))
    temperature = fit_temperature(blend(probs, weights), labels) if calibrate else 1.0
    return weights, temperature


def apply_blend(probs: list[np.ndarray], weights: np.ndarray, temperature: float,
                fallback: np.ndarray | None = None) -> np.ndarray:
    """Weighted blend (NaN-aware) followed by temperature scaling."""

    return apply_temperature(blend(probs, weights, fallback), temperature)


def crossfit_blend(probs: list[np.ndarray], labels: np.ndarray, ensemble: str = "fit", calibrate: bool = True,
                   n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Blend predictions where each row's weights and temperature were fitted on the other rows (honest figure)."""
    folds = np.random.default_rng(seed).integers(0, n_folds, len(labels))
    out = np.zeros((len(labels), 3))
    for k in range(n_folds):
        held = folds == k
        if not held.any():
            continue
        w, t = fit_blend([p[~held] for p in probs], labels[~held], ensemble, calibrate)
        out[held] = apply_blend([p[held] for p in probs], w, t)
    return out
