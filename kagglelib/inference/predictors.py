"""Saved runs as predictors (``DataFrame -> (n, 3) probabilities``): one loader for every kind of run; no training import."""
from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.io import comma_list, read_json
from ..data.features import load_featurizer, pair_embeddings
from ..data.text import INSTRUCTION, encode_pairs
from ..models import pairwise, tune
from ..models.device import resolve_precision
from ..models.forward import predict_probs
from ..models.saved import load_for_inference
from ..models.shape import model_shape, resolve_quantization
from ..models.tabular import logreg_probs, symmetric_predict
from ..run.folder import Run
from ..scoring.calibration import apply_temperature
from .tta import Predictor, tta_predict


log = logging.getLogger(__name__)




def run_fingerprint(run: Run, tta: bool, **settings: Any) -> str:
    """Cache key of a run's chunks: the run's identity (manifest hash: every artifact), TTA and the other settings."""
    data = json.dumps({"manifest": run.identity, "tta": tta, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def transformer_predictor(run: Run | str | Path, device: str | None = None, precision: str = "auto",
                          quantization: str = "", batch_tokens: int | None = None,
                          progress: bool = False) -> Predictor:
    """A predictor for a saved transformer run (LoRA adapter + head, or full weights) on one device.

    ``batch_tokens`` None: 16384 on a GPU, 2048 on CPU (measured faster there: less padding, better cache use).
    An all-fold run (``fold<k>/`` sub-runs, no ``model/``) predicts the mean of its fold models' probabilities.
    ``run``: a :class:`Run` or its folder.
    """
    import torch

    run = run if isinstance(run, Run) else Run.at(run)
    folds = run.folds if not run.model_dir.is_dir() else []
    if folds:
        # Each fold model is loaded once and kept (fine for encoders; a LoRA run holds one base per fold).
        members = [transformer_predictor(f, device, precision, quantization, batch_tokens, progress) for f in folds]
        return lambda df: np.mean([np.asarray(m(df), dtype=np.float64) for m in members], axis=0)


    # Precision follows this predictor's own GPU (a T4 gets fp16 even when the run trained in bf16 on an A100).
    precision = resolve_precision(precision, device)
    if quantization == "auto":
        quantization = auto_quantization(run, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    model, tokenizer, text_cfg, task = load_for_inference(run, device=device, dtype=dtype,
                                                          quantization=quantization)
    suffix = INSTRUCTION if task == "next_token" else ""
    on_gpu = str(device or next(model.parameters()).device).startswith("cuda")
    batch_tokens = batch_tokens or (16384 if on_gpu else 2048)

    def predict(df: pd.DataFrame) -> np.ndarray:
        ids = encode_pairs(tokenizer, df, text_cfg, suffix=suffix)
        return predict_probs(model, ids, task=task, batch_tokens=batch_tokens, device=device, progress=progress,
                             row_ids=df["id"].to_numpy() if "id" in df.columns else None)

    return predict


def auto_quantization(run: Run, device: str | None) -> str:
    """'4bit' for a LoRA run whose 16-bit weights would fill > 60% of this GPU (a 9B on a T4), 'none' if they fit,
    "" (the run's own setting) off CUDA. Decided by :func:`kagglelib.plan.resolve_quantization`."""
    import torch


    if not torch.cuda.is_available() or not str(device or "cuda").startswith("cuda"):
        return ""
    cfg = run.config
    memory = torch.cuda.get_device_properties(torch.device(device or "cuda")).total_memory
    return resolve_quantization("auto", cfg, model_shape(cfg["backbone"]), memory)


def release_models(*holders: Any) -> None:
    """Drop the references the caller passed (predictors closing over models), collect, and empty the CUDA cache.

    Called between runs so the next run's models never share a GPU with the previous ones (two 9B per T4 = OOM).
    """
    import torch

    for h in holders:
        if isinstance(h, list):
            h.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def visible_devices(devices: str = "auto") -> list[str]:
    """'auto' -> every visible CUDA device (else ['cpu']); or a comma list such as 'cuda:0,cuda:1'."""
    if devices != "auto":
        return comma_list(devices)
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i}" for i in range(n)] or ["cpu"]


def run_predictors(run: Run | str | Path, devices: Sequence[str], precision: str = "auto",
                   quantization: str = "", batch_tokens: int | None = None,
                   cache_dir: str | Path | None = None) -> list[Predictor]:
    """The one way to load a run for prediction: one predictor per device for a transformer run (each fold's
    model averaged for an all-fold run), one predictor for a baseline run. ``run``: a :class:`Run` or its folder.

    ``cache_dir``: where the frozen MiniLM's text embeddings are kept (keyed by the encoder's content and window
    settings, so runs reading the same texts share them; None: each predictor keeps its own in memory)."""
    run = run if isinstance(run, Run) else Run.at(run)
    if run.kind == "baseline":
        return [load_baseline(run, cache_dir)]
    if run.kind == "pairwise":   # frozen encoder + heads: one predictor
        return [tune.load_predictor(run.path, cache_dir)]
    return [transformer_predictor(run.path, device=d, precision=precision, quantization=quantization,
                                  batch_tokens=batch_tokens) for d in devices]


def load_predictor(run: str | Path, output_dir: str | Path | None = None, device: str | None = None,
                   cache_dir: str | Path | None = None) -> Predictor:
    """A predictor for a run given by name (under output_dir/runs or /kaggle/input) or folder."""
    return run_predictors(Run.open(run, output_dir), [device or visible_devices()[0]], cache_dir=cache_dir)[0]


def predict_pair(prompt: str | list[str], response_a: str | list[str], response_b: str | list[str],
                 predict: Predictor, tta: bool = True) -> dict[str, float]:
    """Probabilities that A wins / B wins / tie for one battle (texts or lists of turns)."""
    as_turns = (lambda x: [x] if isinstance(x, str) else list(x))
    df = pd.DataFrame({"id": [0], "prompt": [as_turns(prompt)], "response_a": [as_turns(response_a)],
                       "response_b": [as_turns(response_b)], "model_a": [""], "model_b": [""]})
    p = tta_predict(predict, df, tta)[0]
    return {"winner_model_a": float(p[0]), "winner_model_b": float(p[1]), "winner_tie": float(p[2])}


def load_baseline(run: Run | str | Path, cache_dir: str | Path | None = None) -> Predictor:
    """A saved 02 run (a :class:`Run` or its folder) as a predictor, from its folder alone (``cache_dir``: as in
    :func:`run_predictors`, for the whole-text MiniLM features)."""
    run = run if isinstance(run, Run) else Run.at(run)
    run_dir = run.path
    if not run.predictor_file.exists():
        raise FileNotFoundError(
            f"{run_dir}: no predictor.json / featurizer/ (the fitted feature state): the run was made by an older "
            "kagglelib that refitted features from the training file at inference time. Re-run 02 (notebook "
            "02_baseline or kagglelib.baseline.run_baseline) to make a self-contained run folder.")
    state = read_json(run.predictor_file)
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
    if chunked:   # whole-text MiniLM features (kagglelib.models.pairwise)
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
            extra = pairwise.embedding_features(pairwise.embed_frame(df, cache_dir, encoder=encoder, progress=False,
                                                                     memory=memory, **chunk_kw), comp)
            feats = pd.concat([feats, extra], axis=1)
        if list(feats.columns) != columns:
            raise ValueError(f"{run_dir}: features differ from the saved run's ({len(feats.columns)} vs "
                             f"{len(columns)} columns); re-run 02 with this kagglelib")
        probs = np.mean([symmetric_predict(p, feats) for p in fold_predict], axis=0)
        return apply_temperature(probs, state["temperature"])

    return predict
