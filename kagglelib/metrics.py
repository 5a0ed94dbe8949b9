"""Competition metrics: multi-class log loss as Kaggle scores it, accuracy, per-class accuracy."""
from __future__ import annotations

import numpy as np

from .data import LABEL_NAMES

EPS = 1e-15  # Kaggle's clip for log loss


def normalise(probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Clip to [eps, 1 - eps] and renormalise rows, as Kaggle does before scoring."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return p / p.sum(axis=1, keepdims=True)


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean multi-class log loss with Kaggle's clipping and row renormalisation."""
    labels = np.asarray(labels, dtype=np.int64)
    p = normalise(probs)
    if len(labels) != len(p):
        raise ValueError(f"log_loss: {len(labels)} labels but {len(p)} prediction rows")
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Share of rows whose argmax equals the label."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))


def per_class_accuracy(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Recall of each class (A, B, tie); NaN for a class absent from the labels."""
    labels = np.asarray(labels)
    pred = np.asarray(probs).argmax(axis=1)
    return {name: float(np.mean(pred[labels == k] == k)) if (labels == k).any() else float("nan")
            for k, name in enumerate(LABEL_NAMES[: np.asarray(probs).shape[1]])}


def ab_accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """WSDM Cup accuracy: A-vs-B decision on rows that are not ties."""
    labels = np.asarray(labels)
    keep = labels != 2
    return float(np.mean((np.asarray(probs)[keep, 1] > np.asarray(probs)[keep, 0]).astype(int) == labels[keep]))


def prior_probs(labels: np.ndarray, n: int) -> np.ndarray:
    """The class-prior prediction (label frequencies) repeated for n rows."""
    prior = np.bincount(np.asarray(labels, dtype=np.int64), minlength=3) / len(labels)
    return np.tile(prior, (n, 1))


def summarise(labels: np.ndarray, probs: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Log loss, accuracy and per-class accuracy in one flat dict with an optional key prefix."""
    out = {f"{prefix}log_loss": log_loss(labels, probs), f"{prefix}accuracy": accuracy(labels, probs)}
    out.update({f"{prefix}acc_{k}": v for k, v in per_class_accuracy(labels, probs).items()})
    return out
