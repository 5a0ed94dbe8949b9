"""The normalised battle frame: column names, the A/B swap, targets and soft rows, ids, content hashes, rule flags."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from .text import join_turns


TEXT_COLUMNS = ("prompt", "response_a", "response_b")
WINNER_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
# Probability targets in the normalised frame; the _a/_b names let swap_ab swap them with the texts.
TARGET_COLUMNS = ("target_a", "target_b", "target_tie")
SWAP_ORDER = (1, 0, 2)   # the A/B swap as a permutation of (A, B, tie): the one place it is written
LABEL_NAMES = ("A", "B", "tie")


def content_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows' ids, texts and labels, in order: equal only for the same content, not just the same ids."""
    # Soft targets join the hash only when present, so one-hot frames keep their fingerprints.
    cols = [c for c in ("id", *TEXT_COLUMNS, "label", *(TARGET_COLUMNS if is_soft(df) else ())) if c in df.columns]
    h = hashlib.sha256(json.dumps(cols).encode())
    for row in df[cols].itertuples(index=False):
        h.update(json.dumps([v if isinstance(v, (list, str)) else str(v) for v in row], ensure_ascii=False,
                            default=str).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def swap_ab(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with response A and B (texts, models, labels, any ``*_a``/``*_b`` column) swapped."""
    out = df.copy()
    for col in df.columns:
        if col.endswith("_a") and col[:-2] + "_b" in df.columns:
            twin = col[:-2] + "_b"
            out[col], out[twin] = df[twin].to_numpy(), df[col].to_numpy()
    if "label" in df.columns:
        out["label"] = swap_labels(df["label"].to_numpy())
    return out


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels with A (0) and B (1) exchanged; tie (2) stays."""
    return np.asarray(SWAP_ORDER)[np.asarray(labels, dtype=np.int64)]


def swap_probs(probs: np.ndarray) -> np.ndarray:
    """Swap the A and B entries of probabilities / targets: (n, 3), (n, 2) or a single (3,) vector."""
    probs = np.asarray(probs)
    order = list(SWAP_ORDER) if probs.shape[-1] == 3 else [1, 0]
    return probs[..., order]


def prob_frame(ids: object, probs: np.ndarray, **extra: object) -> pd.DataFrame:
    """``id`` (+ extra columns, in the order given) + the three winner probability columns."""
    out = pd.DataFrame({"id": np.asarray(ids)})
    for k, v in extra.items():
        out[k] = v
    for j, col in enumerate(WINNER_COLUMNS):
        out[col] = probs[:, j]
    return out


def rows_by_id(df: pd.DataFrame, ids: object) -> pd.DataFrame:
    """The rows of ``df`` whose ids (compared as text) are ``ids``, in that order (KeyError if one is missing)."""
    keyed = df.assign(_key=df["id"].astype(str)).set_index("_key")
    return keyed.loc[pd.Index(ids).astype(str)].reset_index(drop=True)


def one_hot(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """One-hot float matrix from integer labels."""
    return np.eye(n_classes)[np.asarray(labels, dtype=np.int64)]


def add_targets(df: pd.DataFrame, targets: np.ndarray) -> pd.DataFrame:
    """Set ``label`` (argmax; the first class on an exact tie) and the ``target_*`` probability columns in place."""
    targets = np.asarray(targets, dtype=np.float64)
    df["label"] = targets.argmax(axis=1).astype(np.int64)
    for col, values in zip(TARGET_COLUMNS, targets.T):
        df[col] = values
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    """(n, 3) probability targets: the ``target_*`` columns, else one-hot ``label``."""
    if all(c in df.columns for c in TARGET_COLUMNS):
        return df[list(TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return one_hot(df["label"].to_numpy())


def soft_rows(targets: np.ndarray) -> np.ndarray:
    """Per row of (n, 3) targets: True where they are not one-hot (pseudo-labels, teacher outputs)."""
    t = np.asarray(targets, dtype=np.float64)
    return ((t != 0) & (t != 1)).any(axis=1)


def is_soft(df: pd.DataFrame) -> bool:
    """True when some row's targets are not one-hot (pseudo-labels, teacher files)."""
    if not all(c in df.columns for c in TARGET_COLUMNS) or not len(df):
        return False
    return bool(soft_rows(df[list(TARGET_COLUMNS)].to_numpy()).any())


def pair_keys(df: pd.DataFrame) -> np.ndarray:
    """Content hash per row of (prompt, {response_a, response_b}): equal for a battle and its A/B-swapped copy."""
    def key(p: list[str], a: list[str], b: list[str]) -> str:
        sides = sorted(json.dumps(x, ensure_ascii=False) for x in (a, b))
        text = json.dumps([p, *sides], ensure_ascii=False)
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    return np.array([key(p, a, b) for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"])], dtype=object)


def rule_masks(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Rows each rule applies to: identical responses; A empty only; B empty only."""
    a, b = join_turns(df["response_a"]), join_turns(df["response_b"])
    empty_a, empty_b = (a.str.strip() == "").to_numpy(), (b.str.strip() == "").to_numpy()
    return {"identical": (a == b).to_numpy(), "empty_a": empty_a & ~empty_b, "empty_b": empty_b & ~empty_a}
