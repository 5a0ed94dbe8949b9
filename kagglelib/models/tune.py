"""Fine-tuning real encoder weights under the pairwise head on a CPU: the last layer's feed-forward block.

Notebook 04's ``pairwise_tune="ffn"`` (and the seeds' LoRA / full fine-tune / PiSSA factors in 06). Everything below
the last transformer layer's feed-forward block (intermediate + output dense and LayerNorm) stays frozen, so the
block's input at every token (the post-attention states) is computed once by one encoder pass
(:func:`token_states`), and a training step runs the block alone. The block is trained by LoRA (default or PiSSA
init) or fully.

A step estimates each text's pooled vector as the frozen pooled mean plus the block's change averaged over a random
sample of the text's tokens: unbiased for the mean, and exactly the frozen vector at the start (LoRA and PiSSA both
start at the base weights). Held-out rows and saved runs pool every token exactly (:func:`pooled_exact`).
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.io import atomic_path, folder_sha256
from ..run.names import RunPaths
from . import pairwise
from .pairwise import PairInputs, SCALARS, padded, text_hash, text_windows, tta_average

FFN_TARGETS = ["dense"]   # LoRA targets inside the block: intermediate.dense and output.dense


@dataclass
class TokenStates:
    """Post-attention states of the last layer at every token, grouped by text, and the frozen pooled means."""

    x: Any                  # (tokens, hidden) float16 tensor: the block's input
    offsets: np.ndarray     # (texts + 1,): text i owns tokens offsets[i]:offsets[i + 1]
    frozen: Any             # (texts, hidden) float32 tensor: unnormalised token mean of the frozen last hidden states
    keys: list[str]         # text hashes, in order


_STATES: dict[str, TokenStates] = {}   # in-process memo by content (texts, encoder weights, window settings)


def _block(model: Any) -> Any:
    """The last transformer layer of a BERT/DeBERTa-style encoder (``encoder.layer[-1]``), or a clear error."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None or not hasattr(layers[-1], "intermediate") or not hasattr(layers[-1], "output"):
        raise ValueError(f"{type(model).__name__}: pairwise_tune='ffn' needs a BERT-style encoder "
                         "(encoder.layer[-1].intermediate / .output)")
    return layers[-1]


def token_states(texts: Sequence[str], encoder: tuple, window_tokens: int = 128, max_windows: int = 4,
                 max_chars: int = 6000, batch_windows: int = 64, progress: bool = True) -> TokenStates:
    """One frozen encoder pass over every text's windows: the last block's input per token and the pooled means."""
    import torch
    from tqdm.auto import tqdm

    tok, model, folder = encoder
    keys = [text_hash(str(t)) for t in texts]
    memo = hashlib.sha256("|".join([folder_sha256(folder), str(window_tokens), str(max_windows), str(max_chars),
                                    *keys]).encode()).hexdigest()
    if memo in _STATES:
        return _STATES[memo]
    owner, wins = text_windows(tok, [str(t) for t in texts], window_tokens, max_windows, max_chars)
    captured: list[Any] = []
    hook = _block(model).intermediate.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    hidden = model.config.hidden_size
    sums = torch.zeros((len(texts), hidden), dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.float64)
    per_text: list[list[Any]] = [[] for _ in texts]
    order = np.argsort([len(w) for w in wins], kind="stable")
    try:
        with torch.inference_mode():
            for s in tqdm(range(0, len(order), batch_windows), desc="encoder token states", leave=False,
                          disable=not progress):
                idx = order[s:s + batch_windows]
                ids, mask = padded(wins, idx)
                captured.clear()
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
                states = captured[-1]
                for r, i in enumerate(idx):
                    n = int(mask[r].sum())
                    per_text[owner[i]].append(states[r, :n].to(torch.float16))
                    sums[owner[i]] += out[r, :n].double().sum(0)
                    counts[owner[i]] += n
    finally:
        hook.remove()
    lengths = np.array([sum(len(c) for c in chunks) for chunks in per_text])
    x = torch.cat([c for chunks in per_text for c in chunks]) if len(texts) else torch.zeros((0, hidden))
    result = TokenStates(x=x, offsets=np.r_[0, np.cumsum(lengths)],
                         frozen=(sums / counts.clamp(min=1)[:, None]).float(), keys=keys)
    _STATES.clear()   # one text set at a time: a fold loop reuses it, a new data set replaces it
    _STATES[memo] = result
    return result


def frame_states(df: pd.DataFrame, encoder: tuple, progress: bool = True,
                 **emb_kw: Any) -> tuple[TokenStates, np.ndarray, dict[str, np.ndarray]]:
    """Token states of every distinct prompt / response text of ``df``; each row side's text index (prompts, then
    responses A, then B: ``codes``); the frozen L2-normalised vectors per side ("p", "a", "b")."""
    texts = pairwise.side_texts(df)
    codes, uniques = pd.factorize(pd.concat([texts[s] for s in pairwise.SIDES], ignore_index=True))
    states = token_states(list(uniques), encoder, progress=progress, **emb_kw)
    frozen = torch_normalise(states.frozen)[codes]
    return states, codes, dict(zip(pairwise.SIDES, np.split(frozen, len(pairwise.SIDES))))


def ffn_block(model: Any) -> Any:
    """A copy of the encoder's last feed-forward block as a module: x -> LayerNorm(dense(act(dense(x))) + x)."""
    from torch import nn

    layer = _block(model)

    class FFN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.intermediate = copy.deepcopy(layer.intermediate)
            self.output = copy.deepcopy(layer.output)

        def forward(self, x: Any) -> Any:
            return self.output(self.intermediate(x), x)

    return FFN().eval()   # eval: the block's dropout off, as in the frozen pass


def adapt(ffn: Any, use_lora: bool, r: int = 8, alpha: int = 16, dropout: float = 0.0,
          init: str = "default", seed: int = 0) -> Any:
    """The block made trainable: LoRA on both dense layers (``init`` default | pissa | pissa_niter_4), or all weights."""
    import torch

    torch.manual_seed(seed)
    ffn = copy.deepcopy(ffn)
    if not use_lora:
        for p in ffn.parameters():
            p.requires_grad_(True)
        return ffn.eval()
    from peft import LoraConfig, get_peft_model   # optional heavy dependency: only tuned runs need peft

    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=FFN_TARGETS,
                      init_lora_weights=True if init == "default" else init)
    return get_peft_model(ffn, lora).eval()


def merged(ffn: Any) -> Any:
    """The plain block (LoRA folded into the weights), for saving and for predicting."""
    return ffn.merge_and_unload() if hasattr(ffn, "merge_and_unload") else ffn


def _segment_mean(values: Any, seg: Any, n: int) -> Any:
    import torch

    sums = torch.zeros((n, values.shape[1]), dtype=values.dtype).index_add_(0, seg, values)
    counts = torch.zeros(n, dtype=values.dtype).index_add_(0, seg, torch.ones(len(seg), dtype=values.dtype))
    return sums / counts.clamp(min=1)[:, None]


def pooled_exact(ffn: Any, states: TokenStates, texts: np.ndarray, chunk: int = 16384) -> Any:
    """(len(texts), hidden) L2-normalised vectors of these texts with this block, every token pooled."""
    import torch

    texts = np.asarray(texts)
    spans = [np.arange(states.offsets[t], states.offsets[t + 1]) for t in texts]
    idx = np.concatenate(spans) if spans else np.zeros(0, dtype=int)
    seg = np.repeat(np.arange(len(texts)), [len(s) for s in spans])
    out = torch.zeros((len(texts), states.x.shape[1]), dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, len(idx), chunk):
            y = ffn(states.x[torch.from_numpy(idx[s:s + chunk])].float()).double()
            out.index_add_(0, torch.from_numpy(seg[s:s + chunk]), y)
    lengths = torch.tensor([len(s) for s in spans], dtype=torch.float64).clamp(min=1)
    return torch.nn.functional.normalize((out / lengths[:, None]).float(), dim=1)


def pooled_sampled(ffn: Any, base: Any, states: TokenStates, texts: np.ndarray, tokens: int,
                   rng: np.random.Generator) -> Any:
    """Differentiable estimate of the texts' vectors: frozen mean + the block's change on ``tokens`` sampled tokens."""
    import torch

    picks, seg = [], []
    for j, t in enumerate(texts):
        lo, hi = states.offsets[t], states.offsets[t + 1]
        n = min(tokens, hi - lo)
        picks.append(lo + rng.choice(hi - lo, size=n, replace=False))
        seg.append(np.full(n, j))
    idx = torch.from_numpy(np.concatenate(picks))
    segs = torch.from_numpy(np.concatenate(seg))
    x = states.x[idx].float()
    with torch.no_grad():
        y0 = base(x)
    delta = _segment_mean(ffn(x) - y0, segs, len(texts))
    return torch.nn.functional.normalize(states.frozen[torch.from_numpy(np.asarray(texts))] + delta, dim=1)


def pair_tensors(inputs: PairInputs, norm: dict[str, np.ndarray], e: dict[str, Any],
                 components: np.ndarray | None) -> tuple[Any, Any, Any]:
    """The head's standardised inputs with the embedding columns of :func:`pairwise.pair_inputs` rebuilt from
    tensors ``e`` ("p", "a", "b": (n, hidden)); the length columns come from ``inputs`` (the same rows)."""
    import torch

    comp = torch.from_numpy(components) if components is not None else None
    proj = (lambda v: v @ comp.T) if comp is not None else (lambda v: v)  # noqa: E731
    k = proj(e["a"][:1]).shape[1]
    cos_col = 2 * k + SCALARS.index("cos_prompt")

    def side(s: str) -> Any:
        const = torch.from_numpy(inputs.a if s == "a" else inputs.b)
        cos = (e[s] * e["p"]).sum(1, keepdim=True)
        return torch.cat([proj(e[s]), proj(e[s] - e["p"]), const[:, 2 * k:cos_col], cos, const[:, cos_col + 1:]], 1)

    zc = torch.from_numpy(inputs.z)
    z = torch.cat([proj(e["a"] - e["b"]).abs(), (e["a"] * e["b"]).sum(1, keepdim=True), zc[:, k + 1:]], 1)
    t = {n: torch.from_numpy(v.astype(np.float32)) for n, v in norm.items()}
    return ((side("a") - t["side_mean"]) / t["side_std"], (side("b") - t["side_mean"]) / t["side_std"],
            (z - t["pair_mean"]) / t["pair_std"])


# ---------------------------------------------------------------- saved blocks: writing and predicting from a run

def save_blocks(model_dir: str | Path, ffns: dict[int, Any]) -> None:
    """Each fold's trained block (LoRA merged) as ``ffn_fold<k>.safetensors``."""
    from safetensors.torch import save_file

    for k, ffn in ffns.items():
        with atomic_path(Path(model_dir) / f"ffn_fold{k}.safetensors") as tmp:
            save_file({n: t.detach().contiguous() for n, t in merged(ffn).state_dict().items()}, str(tmp))


def load_predictor(run_dir: str | Path, cache_dir: str | Path | None = None) -> Any:
    """Predictor of a saved pairwise run; a tuned one (``tune="ffn"``) pools every token through each fold's block."""
    from safetensors.torch import load_file

    model_dir = RunPaths(Path(run_dir)).model_dir
    state, heads, comps = pairwise.load_heads(model_dir)
    if state.get("tune", "none") == "none":
        return pairwise.load_predictor(run_dir, cache_dir)
    encoder = pairwise.load_encoder(pairwise.encoder_folder(state["backbone"]))
    emb_kw = {k: state[k] for k in ("window_tokens", "max_windows", "max_chars")}
    blocks = []
    for f, (head, norm, k) in zip(state["folds"], heads):
        ffn = ffn_block(encoder[1])
        ffn.load_state_dict(load_file(str(model_dir / f"ffn_fold{f['fold']}.safetensors")))
        blocks.append((ffn.eval(), head, norm, k))

    def predict(df: pd.DataFrame) -> np.ndarray:
        states, codes, frozen = frame_states(df, encoder, progress=False, **emb_kw)
        probs = []
        for ffn, head, norm, k in blocks:
            vec = pooled_exact(ffn, states, np.arange(len(states.keys)))[codes]
            e = dict(zip(pairwise.SIDES, vec.split(len(df))))
            inputs = pairwise.pair_inputs(df, frozen, comps[k], state["emb_scale"])
            probs.append(head_forward(head, inputs, norm, e, comps[k], state.get("tta", False)))
        return np.mean(probs, axis=0)

    return predict


def torch_normalise(vectors: Any) -> np.ndarray:
    """L2-normalised rows of a tensor, as numpy."""
    import torch

    return torch.nn.functional.normalize(vectors, dim=1).numpy()


def head_forward(head: Any, inputs: PairInputs, norm: dict[str, np.ndarray], e: dict[str, Any],
                 components: np.ndarray | None, tta: bool = False) -> np.ndarray:
    """(n, 3) probabilities of a head over the vectors ``e`` (and, with ``tta``, the A/B-swapped rows averaged in)."""
    import torch

    with torch.no_grad():
        probs = torch.softmax(head(*pair_tensors(inputs, norm, e, components)), -1).double().numpy()
        if tta:
            swapped = {"p": e["p"], "a": e["b"], "b": e["a"]}
            q = torch.softmax(head(*pair_tensors(inputs.swapped(), norm, swapped, components)), -1).double().numpy()
            probs = tta_average(probs, q)
    return probs
