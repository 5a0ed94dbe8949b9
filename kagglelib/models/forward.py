"""Batched forward pass to class probabilities: length-sorted batches under a token budget, dynamic padding.

Shared by training (validation) and inference; imports nothing from training. Classifiers are padded on
the right (the model picks the last non-pad token); the next-token variant is padded on the left so the
label-token logits are read at the last position with ``logits_to_keep=1`` (no full-vocab logits per token).
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def pad_batch(seqs: Sequence[Sequence[int]], pad_token_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) as int64 tensors padded to the longest row on ``side``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            raise ValueError(f"row {i} of the batch has no tokens")
        sl = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, sl] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def padding_side(task: str) -> str:
    """'right' for classifiers, 'left' for next-token scoring."""
    if task not in ("classifier", "next_token"):
        raise ValueError(f"task must be 'classifier' or 'next_token', got {task!r}")
    return "right" if task == "classifier" else "left"


def forward_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, task: str,
                   label_token_ids: Sequence[int] | None = None) -> torch.Tensor:
    """(batch, 3) float32 logits: the classifier's output, or the label-token logits at the last position."""
    if task == "classifier":
        return model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    if label_token_ids is None:
        raise ValueError("next_token task needs label_token_ids (models.label_token_ids(tokenizer))")
    # Left padding: positions count real tokens only, so a padded row sees the same positions as alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=1)
    return out.logits[:, -1, list(label_token_ids)].float()


def make_batches(lengths: Sequence[int], batch_tokens: int, max_rows: int = 256) -> list[np.ndarray]:
    """Row indices per batch, longest rows first, each batch's padded size (rows x longest) <= batch_tokens."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        rows = int(min(max(batch_tokens // max(longest, 1), 1), max_rows))   # a too-long row still gets a batch
        batches.append(order[start:start + rows])
        start += rows
    return batches


def _model_attr(model: nn.Module, name: str) -> Any:
    config = getattr(model, "config", None)
    return getattr(config, name, None) if config is not None else None


def predict_probs(model: nn.Module, input_ids_list: Sequence[Sequence[int]], task: str = "classifier",
                  batch_tokens: int = 16384, device: str | torch.device | None = None,
                  pad_token_id: int | None = None, label_token_ids: Sequence[int] | None = None,
                  autocast_dtype: torch.dtype | None = None, progress: bool = True,
                  row_ids: Sequence[Any] | None = None) -> np.ndarray:
    """(n, 3) softmax probabilities in the original row order.

    ``pad_token_id`` / ``label_token_ids`` default to ``model.config.pad_token_id`` /
    ``model.config.arena_label_token_ids`` (set by :mod:`kagglelib.models`). ``autocast_dtype`` (e.g.
    torch.float16 on a T4) runs the forward under CUDA autocast; ``None`` uses the weights' dtype.
    Non-finite outputs (fp16 overflow) raise :class:`NonFiniteError` naming the rows (``row_ids``, else positions).
    """
    n = len(input_ids_list)
    if n == 0:
        return np.zeros((0, 3), dtype=np.float64)
    pad_token_id = _model_attr(model, "pad_token_id") if pad_token_id is None else pad_token_id
    if pad_token_id is None:
        raise ValueError("predict_probs needs pad_token_id (tokenizer.pad_token_id)")
    if task == "next_token" and label_token_ids is None:
        label_token_ids = _model_attr(model, "arena_label_token_ids")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    side = padding_side(task)
    batches = make_batches([len(s) for s in input_ids_list], batch_tokens)
    out = np.zeros((n, 3), dtype=np.float64)
    if progress:
        from tqdm.auto import tqdm
        batches_iter = tqdm(batches, desc="predict", unit="batch")
    else:
        batches_iter = batches
    amp = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
           if autocast_dtype is not None and device.type == "cuda" else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), amp:
            for idx in batches_iter:
                ids, mask = pad_batch([input_ids_list[i] for i in idx], pad_token_id, side)
                logits = forward_logits(model, ids.to(device), mask.to(device), task, label_token_ids)
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    finally:
        model.train(was_training)
    check_finite(out, row_ids)
    return out


class NonFiniteError(FloatingPointError):
    """Predictions with NaN/inf: raised instead of letting them reach a cache, a blend or a submission."""


def check_finite(probs: np.ndarray, row_ids: Sequence[Any] | None = None, what: str = "predictions") -> np.ndarray:
    """``probs`` unchanged if every value is finite, else :class:`NonFiniteError` listing the bad rows' ids."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(probs, dtype=np.float64)).all(axis=1))
    if len(bad):
        names = [row_ids[i] for i in bad[:20]] if row_ids is not None else bad[:20].tolist()
        raise NonFiniteError(
            f"{what}: {len(bad)} of {len(probs)} rows are not finite (NaN/inf; fp16 overflow?), "
            f"{'ids' if row_ids is not None else 'rows'} {names}{' ...' if len(bad) > 20 else ''}. The run is stopped "
            "and nothing is cached; use precision='fp32'/'bf16' for this model or check the weights.")
    return probs
