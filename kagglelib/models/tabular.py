"""The baseline's feature models as plain numbers: swap-symmetric prediction and the saved logistic regression."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from ..data.features import swap_features
from ..data.frame import swap_probs


def symmetric_predict(predict: Callable[[pd.DataFrame], np.ndarray], feats: pd.DataFrame) -> np.ndarray:
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
