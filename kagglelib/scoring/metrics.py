"""Competition metrics: multi-class log loss as Kaggle scores it, accuracy, per-class accuracy."""
from __future__ import annotations

import numpy as np

from ..data.frame import LABEL_NAMES


EPS = 1e-15  # Kaggle's clip for log loss


def normalise(probs: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Clip to [eps, 1 - eps] and renormalise rows, as Kaggle does before scoring."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return p / p.sum(axis=1, keepdims=True)


def hard_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels from integer labels or (n, k) probability targets (argmax)."""
    labels = np.asarray(labels)
    return labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64)


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean multi-class log loss (Kaggle's clipping and renormalisation); labels: integers or (n, k) targets."""
    labels = np.asarray(labels)
    p = normalise(probs)
    if len(labels) != len(p):
        raise ValueError(f"log_loss: {len(labels)} labels but {len(p)} prediction rows")
    if labels.ndim == 2:   # probability targets: cross-entropy -sum t log p (equal to the above for one-hot)
        return float(-np.mean((labels.astype(np.float64) * np.log(p[:, : labels.shape[1]])).sum(axis=1)))
    labels = labels.astype(np.int64)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Share of rows whose argmax equals the label (the targets' argmax for probability targets)."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == hard_labels(labels)))


def per_class_accuracy(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Recall of each class (A, B, tie); NaN for a class absent from the labels."""
    labels = hard_labels(labels)
    pred = np.asarray(probs).argmax(axis=1)
    return {name: float(np.mean(pred[labels == k] == k)) if (labels == k).any() else float("nan")
            for k, name in enumerate(LABEL_NAMES[: np.asarray(probs).shape[1]])}


def ab_accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """WSDM Cup accuracy: A-vs-B decision on rows that are not ties."""
    labels = hard_labels(labels)
    keep = labels != 2
    return float(np.mean((np.asarray(probs)[keep, 1] > np.asarray(probs)[keep, 0]).astype(int) == labels[keep]))


def prior_probs(labels: np.ndarray, n: int) -> np.ndarray:
    """The class-prior prediction (label frequencies) repeated for n rows."""
    labels = np.asarray(labels)
    prior = labels.mean(axis=0) if labels.ndim == 2 else np.bincount(labels.astype(np.int64), minlength=3) / len(labels)
    return np.tile(prior, (n, 1))


def summarise(labels: np.ndarray, probs: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Log loss, accuracy and per-class accuracy in one flat dict with an optional key prefix."""
    out = {f"{prefix}log_loss": log_loss(labels, probs), f"{prefix}accuracy": accuracy(labels, probs)}
    out.update({f"{prefix}acc_{k}": v for k, v in per_class_accuracy(labels, probs).items()})
    return out
