"""Bias probes on real rows: position, verbosity and self-enhancement / assertiveness.

Each probe takes a predictor (``DataFrame -> (n, 3)`` probabilities) and real battles, perturbs a
copy of the rows (the input DataFrame is never modified), and reports how the predictions move:

- position: predict ``swap_ab(x)``; the argmax flip rate (the decision changes when A and B trade
  places) and mean |p_A(x) - p_B(swap x)|. Both are 0 for a swap-TTA predictor.
- verbosity: append content-free filler (stock closing sentences, repeated) to one response until it
  is at least twice as long; the mean rise of that side's win probability. Also the slope of
  p_A - p_B on log(len A / len B) next to the same slope of the human labels (1[A] - 1[B]).
- assertiveness: prepend a confident sentence to one response, minus the effect of a neutral
  sentence of exactly the same length (so a model that only counts characters scores 0).
- self-claim: append a sentence saying this answer is the better one, minus a same-length neutral one.

Every perturbation is applied to side A and, separately, to side B, and the two shifts are averaged.
:func:`bias_report` runs them on the held-out rows of saved runs, without and with swap TTA (notebook 06).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..data.folds import load_training
from ..data.frame import swap_ab, swap_probs
from ..data.text import join_turns
from ..inference.predictors import Predictor, load_predictor
from ..inference.tta import tta_predict
from ..run.folder import Run
from ..run.layout import heldout_predictions


FILLER = (" I hope this helps.", " Let me know if you have any other questions.", " Feel free to ask more.",
          " Thank you for reading.")
# The probe sentences and their neutral controls have equal lengths (a test checks it).
ASSERTIVE = "I am completely certain of this answer. "
NEUTRAL_PREFIX = "Here is a reply to what you have asked. "
SELF_CLAIM = "\n\nThis answer is better than the other answer."
NEUTRAL_SUFFIX = "\n\nThis answer is a reply to the user question."


def edit_side(df: pd.DataFrame, side: str, edit: Callable[[str], str]) -> pd.DataFrame:
    """A copy of ``df`` with ``edit`` applied to the last turn of response ``side`` ('a' or 'b')."""
    col = f"response_{side}"
    out = df.copy()
    out[col] = [list(turns[:-1]) + [edit(turns[-1])] if turns else [edit("")] for turns in df[col]]
    return out


def pad_filler(text: str, factor: float = 2.0, min_extra: int = 200) -> str:
    """``text`` followed by filler sentences until it is ``factor`` times as long (and min_extra chars longer)."""
    target = max(int(len(text) * factor), len(text) + min_extra)
    out, i = text, 0
    while len(out) < target:
        out += FILLER[i % len(FILLER)]
        i += 1
    return out


def side_shift(predict: Predictor, df: pd.DataFrame, edit: Callable[[str], str],
               base: np.ndarray | None = None) -> float:
    """Mean rise of the edited side's win probability, averaged over editing A and editing B."""
    base = predict(df) if base is None else base
    shift_a = predict(edit_side(df, "a", edit))[:, 0] - base[:, 0]
    shift_b = predict(edit_side(df, "b", edit))[:, 1] - base[:, 1]
    return float(np.mean(np.concatenate([shift_a, shift_b])))


def position_probe(predict: Predictor, df: pd.DataFrame, base: np.ndarray | None = None) -> dict[str, float]:
    """Argmax flip rate and mean |p(x) - unswap(p(swap x))| over the three classes' A/B entries."""
    base = predict(df) if base is None else base
    unswapped = swap_probs(predict(swap_ab(df)))
    return {"flip_rate": float(np.mean(base.argmax(1) != unswapped.argmax(1))),
            "mean_abs_ab_gap": float(np.mean(np.abs(base[:, 0] - unswapped[:, 0]))),
            "max_swap_diff": float(np.max(np.abs(base - unswapped), initial=0.0))}


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of y on x."""
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / max((x * x).sum(), 1e-12))


def length_slopes(df: pd.DataFrame, probs: np.ndarray) -> dict[str, float]:
    """Slope of (p_A - p_B) and of the human (1[A] - 1[B]) on log((1 + len A) / (1 + len B))."""
    la = join_turns(df["response_a"]).str.len().to_numpy(dtype=float)
    lb = join_turns(df["response_b"]).str.len().to_numpy(dtype=float)
    x = np.log1p(la) - np.log1p(lb)
    out = {"model_length_slope": _slope(x, probs[:, 0] - probs[:, 1])}
    if "label" in df.columns:
        y = (df["label"].to_numpy() == 0).astype(float) - (df["label"].to_numpy() == 1).astype(float)
        out["human_length_slope"] = _slope(x, y)
    return out


def run_probes(predict: Predictor, df: pd.DataFrame) -> dict[str, float]:
    """All probes on the rows of ``df``; returns one flat dict of figures."""
    base = predict(df)
    out = {"rows": len(df)}
    out.update(position_probe(predict, df, base))
    out["verbosity_shift"] = side_shift(predict, df, pad_filler, base)
    out.update(length_slopes(df, base))
    out["assertiveness_shift"] = (side_shift(predict, df, lambda t: ASSERTIVE + t, base)
                                  - side_shift(predict, df, lambda t: NEUTRAL_PREFIX + t, base))
    out["self_claim_shift"] = (side_shift(predict, df, lambda t: t + SELF_CLAIM, base)
                               - side_shift(predict, df, lambda t: t + NEUTRAL_SUFFIX, base))
    return out


def probe_rows(run_dir: Path, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``n_rows`` real battles the run held out (its train file, rows in its held-out predictions)."""
    train = load_training(Run.at(run_dir).config["train_path"])
    preds = heldout_predictions(run_dir)
    if preds is not None:
        train = train[train["id"].astype(str).isin(set(preds["id"].astype(str)))]
    if len(train) > n_rows:
        train = train.sample(n=n_rows, random_state=seed).sort_index()
    return train.reset_index(drop=True)


def bias_report(run_dirs: list[Path], n_rows: int, seed: int = 0,
                cache_dir: Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Probe figures per run, without and with swap TTA: {run: {"raw": {...}, "tta": {...}}}.

    A run whose raw predictions are exactly swap-equivariant on the probe rows (``max_swap_diff`` 0: the
    baseline and the symmetric pairwise heads, by construction) gets the raw figures as its TTA figures, since
    TTA then returns the same probabilities; ``swap_exact`` says so. ``cache_dir``: the MiniLM text embeddings
    the runs share (see :func:`kagglelib.inference.predictors.run_predictors`).
    """
    report: dict = {}
    for run_dir in run_dirs:
        try:
            predict = load_predictor(run_dir, cache_dir=cache_dir)
        except (ValueError, FileNotFoundError) as err:   # e.g. a logreg baseline keeps no models
            report[run_dir.name] = {"skipped": str(err)}
            continue
        rows = probe_rows(run_dir, n_rows, seed)
        raw = run_probes(predict, rows)
        exact = raw["max_swap_diff"] == 0
        tta = dict(raw) if exact else run_probes(lambda df: tta_predict(predict, df), rows)
        report[run_dir.name] = {"raw": {**raw, "swap_exact": exact}, "tta": {**tta, "swap_exact": exact}}
    return report


def bias_frame(report: dict) -> pd.DataFrame:
    """The bias report as a table: one row per run and mode (raw / tta)."""
    return pd.DataFrame([{"run": run, "mode": mode, **figs} for run, modes in report.items()
                         for mode, figs in modes.items() if mode != "skipped"])
