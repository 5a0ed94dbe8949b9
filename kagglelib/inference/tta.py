"""Swap TTA and resumable chunked prediction over several devices (see :mod:`kagglelib.inference.submit`)."""
from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..core.io import atomic_path
from ..data.frame import content_fingerprint, swap_ab, swap_probs
from ..models.forward import check_finite

log = logging.getLogger(__name__)
Predictor = Callable[[pd.DataFrame], np.ndarray]   # DataFrame -> (n, 3) probabilities in row order


def tta_predict(predict: Predictor, df: pd.DataFrame, tta: bool = True) -> np.ndarray:
    """Predict ``df``; with ``tta`` average with the un-swapped prediction on ``swap_ab(df)``."""
    probs = np.asarray(predict(df), dtype=np.float64)
    if not tta:
        return probs
    return (probs + swap_probs(np.asarray(predict(swap_ab(df)), dtype=np.float64))) / 2


def _chunk_file(cache_dir: Path, k: int, rows: pd.DataFrame, cache_key: str = "") -> Path:
    """Chunk k's cache file, named by a hash of its rows' ids and texts and ``cache_key`` (run + settings)."""

    key = hashlib.sha256(f"{cache_key}\n{content_fingerprint(rows)}".encode()).hexdigest()[:20]
    return cache_dir / f"chunk_{k:05d}_{key}.npz"


def _load_chunk(path: Path, ids: np.ndarray) -> np.ndarray | None:
    """A finished chunk's probabilities if the file exists and holds exactly these ids, else None."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if z["ids"].astype(str).tolist() != ids.astype(str).tolist():
            log.warning("%s holds other ids (test file changed?); recomputing it", path)
            return None
        if not np.isfinite(z["probs"]).all():
            log.warning("%s holds non-finite probabilities (written by an older version); recomputing it", path)
            return None
        return z["probs"]


def _save_chunk(path: Path, ids: np.ndarray, probs: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, ids=ids.astype(str), probs=probs)


def predict_chunked(predictors: Predictor | Sequence[Predictor], df: pd.DataFrame, cache_dir: str | Path | None = None,
                    chunk_rows: int = 2048, tta: bool = True, time_budget_s: float | None = None,
                    progress: bool = True, cache_key: str = "") -> tuple[np.ndarray, dict]:
    """TTA probabilities for every row (NaN where the time budget stopped) and a status dict.

    ``predictors`` may be a list (one per device); chunk k goes to predictor ``k % len(predictors)``.
    With ``cache_dir`` set, finished chunks are saved and reused on the next call when the chunk's ids and
    texts and ``cache_key`` (the run's manifest and the inference settings) are the same.
    ``time_budget_s`` None: no limit; 0 or less: no new chunk starts (cached chunks are still used).
    """
    predictors = list(predictors) if isinstance(predictors, (list, tuple)) else [predictors]
    n = len(df)
    starts = list(range(0, n, chunk_rows)) or [0]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    ids = df["id"].to_numpy()
    out = np.full((n, 3), np.nan)
    outcome = [""] * len(starts)   # per chunk: reused | computed | skipped_for_time
    begin = time.time()
    deadline = begin + time_budget_s if time_budget_s is not None else None
    slowest = [0.0]

    def run_chunk(k: int) -> str:
        lo, hi = starts[k], min(starts[k] + chunk_rows, n)
        if hi <= lo:
            return "computed"
        path = _chunk_file(cache, k, df.iloc[lo:hi], f"{cache_key}|tta={tta}") if cache is not None else None
        done = _load_chunk(path, ids[lo:hi]) if path is not None else None
        if done is not None:
            out[lo:hi] = done
            return "reused"
        if deadline is not None and time.time() + slowest[0] >= deadline:
            return "skipped_for_time"
        t0 = time.time()
        probs = tta_predict(predictors[k % len(predictors)], df.iloc[lo:hi].reset_index(drop=True), tta)
        slowest[0] = max(slowest[0], time.time() - t0)
        check_finite(probs, ids[lo:hi], f"chunk {k}")   # a NaN chunk stops the run and is never cached
        if path is not None:
            _save_chunk(path, ids[lo:hi], probs)
            for other in cache.glob(f"chunk_{k:05d}_*.npz"):   # this chunk's results for other content/settings
                if other != path:
                    other.unlink(missing_ok=True)
        out[lo:hi] = probs
        return "computed"

    def run_worker(w: int) -> None:
        for k in range(w, len(starts), len(predictors)):
            outcome[k] = run_chunk(k)
            if bar is not None:
                bar.update(1)

    from tqdm.auto import tqdm
    bar = tqdm(total=len(starts), desc="chunks", unit="chunk") if progress else None
    try:
        if len(predictors) == 1:
            run_worker(0)
        else:
            with ThreadPoolExecutor(len(predictors)) as pool:
                list(pool.map(run_worker, range(len(predictors))))
    finally:
        if bar is not None:
            bar.close()
    status = {"chunks": len(starts), "seconds": time.time() - begin, "complete": bool(np.isfinite(out).all())}
    status.update({kind: outcome.count(kind) for kind in ("reused", "computed", "skipped_for_time")})
    return out, status
