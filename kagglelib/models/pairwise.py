"""Pairwise encoder recipe: a frozen encoder reads each prompt and each response once, a small swap-symmetric
head compares the two sides (notebook 04's ``method="pairwise"``; the ``cpu-sample`` default).

Why: on ~900 training rows, fine-tuning a cross-encoder over one 256-token window of prompt + A + B learns
nothing (it sees mostly the prompt and the start of A). Here every text is read whole, in windows of
``window_tokens`` (at most ``max_windows``: the first ones and the last), mean-pooled and averaged into one
L2-normalised vector (:func:`embed_chunked`, cached per text by content hash, shared with 02's embedding
features). The head scores each side with the *same* weights from that side's features and its difference to
the other side, and the tie from features that do not depend on the order (:class:`PairHead`), so swapping A and
B swaps the predicted A/B probabilities exactly: no TTA is needed, no swap copies are trained.

Settings of the head (weight decay, epochs) are chosen per outer fold by an inner cross-validation on that
fold's training rows only (:func:`fit_head_cv`); the scored fold is never looked at.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.io import atomic_path, folder_sha256, read_json, write_json
from ..core.paths import minilm_dir
from ..data.features import pair_forms
from ..data.frame import swap_probs
from ..data.text import head_tail_text, join_turns
from ..run.names import RunPaths
from .build import resolve_backbone

SIDES = ("p", "a", "b")
STORE = "store.npz"
CHUNKED_SETTINGS = {"window_tokens": 128, "max_windows": 4, "max_chars": 6000}   # 02's features, as 04's defaults   # one file per encoder + window settings: keys (text hashes) and vectors


# ---------------------------------------------------------------- frozen encoder, chunked windows, cache

def text_hash(text: str) -> str:
    """Content key of one text (sha1 of its UTF-8 bytes)."""
    return hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()


def windows(ids: Sequence[int], size: int, max_windows: int) -> list[list[int]]:
    """Token ids cut into windows of ``size``; beyond ``max_windows``, the first ``max_windows - 1`` and the last."""
    ids = list(ids)
    chunks = [ids[i:i + size] for i in range(0, max(len(ids), 1), size)] or [[]]
    if len(chunks) > max_windows:
        chunks = chunks[:max_windows - 1] + [ids[-size:]]
    return chunks


def text_windows(tok: Any, texts: Sequence[str], window_tokens: int, max_windows: int,
                 max_chars: int) -> tuple[list[int], list[list[int]]]:
    """(owner text of each window, its token ids with [CLS]/[SEP]): each text head+tail cut, then windowed."""
    cut = [head_tail_text(t, max_chars) for t in texts]
    ids = tok(cut, add_special_tokens=False, truncation=False)["input_ids"]
    body = window_tokens - 2   # room for [CLS] and [SEP]
    owner, wins = [], []
    for i, seq in enumerate(ids):
        for w in windows(seq, body, max_windows):
            owner.append(i)
            wins.append([tok.cls_token_id, *w, tok.sep_token_id])
    return owner, wins


def padded(wins: list[list[int]], idx: Sequence[int]) -> tuple[Any, Any]:
    """(input ids, attention mask) of the windows ``idx``, right-padded to the longest."""
    import torch

    width = max(len(wins[i]) for i in idx)
    x = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, i in enumerate(idx):
        x[r, :len(wins[i])] = torch.tensor(wins[i])
        mask[r, :len(wins[i])] = 1
    return x, mask


def store_dir(cache_dir: str | Path, model_dir: Path, window_tokens: int, max_windows: int, max_chars: int,
              layer: int = -1) -> Path:
    """Cache folder of one encoder (by content: its weights, config and tokenizer files) and window settings."""
    ident = folder_sha256(model_dir)
    tag = hashlib.sha1(f"{ident}|{window_tokens}|{max_windows}|{max_chars}|{layer}".encode()).hexdigest()[:12]
    return Path(cache_dir) / f"chunked_{tag}"


def _load_store(folder: Path) -> dict[str, np.ndarray]:
    path = folder / STORE
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return dict(zip(z["keys"].tolist(), z["vecs"]))


def _save_store(folder: Path, store: dict[str, np.ndarray]) -> None:
    keys = np.array(sorted(store), dtype="U40")
    with atomic_path(folder / STORE) as tmp, open(tmp, "wb") as f:
        np.savez(f, keys=keys, vecs=np.stack([store[k] for k in keys]).astype(np.float32))


def load_encoder(model_dir: str | Path | None = None, threads: int = 0) -> tuple[Any, Any, Path]:
    """(tokenizer, model in eval mode, folder) of a local encoder (default: the pip-packaged MiniLM)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = Path(model_dir) if model_dir else minilm_dir()
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json; the pairwise recipe needs a local encoder folder "
                                "(config.json, model.safetensors, tokenizer files)")
    if threads:
        torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    return tok, model, folder


def embed_chunked(texts: Sequence[str], cache_dir: str | Path | None = None, window_tokens: int = 128,
                  max_windows: int = 4, max_chars: int = 6000, batch_windows: int = 64,
                  model_dir: str | Path | None = None, encoder: tuple | None = None,
                  progress: bool = True, memory: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(n, hidden) L2-normalised embeddings: each text's windows mean-pooled, averaged by tokens; cached per text."""
    import torch
    from tqdm.auto import tqdm

    tok, model, folder = encoder or load_encoder(model_dir)
    texts = [str(t) for t in texts]
    keys = [text_hash(t) for t in texts]
    cache = store_dir(cache_dir, folder, window_tokens, max_windows, max_chars) if cache_dir else None
    store = _load_store(cache) if cache else ({} if memory is None else memory)   # memory: a predictor's own
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in store}.items())
    if todo:
        owner, wins = text_windows(tok, [t for _, t in todo], window_tokens, max_windows, max_chars)
        sums = np.zeros((len(todo), model.config.hidden_size), dtype=np.float64)
        counts = np.zeros(len(todo))
        order = np.argsort([len(w) for w in wins])   # similar lengths per batch: little padding
        with torch.inference_mode():
            for s in tqdm(range(0, len(order), batch_windows), desc="encoder windows", leave=False,
                          disable=not progress):
                idx = order[s:s + batch_windows]
                x, mask = padded(wins, idx)
                hidden = model(input_ids=x, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).double().numpy()
                n_tok = mask.sum(1).numpy()
                for r, i in enumerate(idx):
                    sums[owner[i]] += pooled[r] * n_tok[r]
                    counts[owner[i]] += n_tok[r]
        vecs = sums / counts[:, None]
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        store.update({k: v.astype(np.float32) for (k, _), v in zip(todo, vecs)})
        if cache:
            _save_store(cache, store)
    return np.stack([store[k] for k in keys]) if keys else np.zeros((0, model.config.hidden_size), np.float32)


def side_texts(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Joined prompt ("p"), response A ("a") and B ("b") texts of every row."""
    return {"p": join_turns(df["prompt"]), "a": join_turns(df["response_a"]), "b": join_turns(df["response_b"])}


def embed_frame(df: pd.DataFrame, cache_dir: str | Path | None = None, **kwargs: Any) -> dict[str, np.ndarray]:
    """Chunked embeddings of every row's prompt, response A and response B (each distinct text encoded once)."""
    texts = side_texts(df)
    n = len(df)
    allt = pd.concat([texts[s] for s in SIDES], ignore_index=True)
    codes, uniques = pd.factorize(allt)
    emb = embed_chunked(list(uniques), cache_dir, **kwargs)[codes]
    return {s: emb[i * n:(i + 1) * n] for i, s in enumerate(SIDES)}


# ---------------------------------------------------------------- features of each side and of the pair

SCALARS = ("log_chars", "log_words", "log_lines", "log_list_items", "log_headers", "log_code", "len_vs_prompt",
           "cos_prompt")


def _counts(texts: pd.Series) -> dict[str, np.ndarray]:
    """Length and markdown counts of each text (full text, vectorised)."""
    t = texts.fillna("").astype(str)
    return {"log_chars": np.log1p(t.str.len().to_numpy(float)),
            "log_words": np.log1p(t.str.count(r"\S+").to_numpy(float)),
            "log_lines": np.log1p(t.str.count("\n").to_numpy(float)),
            "log_list_items": np.log1p(t.str.count(r"(?m)^\s*(?:[-*+]|\d{1,3}[.)])\s").to_numpy(float)),
            "log_headers": np.log1p(t.str.count(r"(?m)^\s{0,3}#{1,6}\s").to_numpy(float)),
            "log_code": np.log1p(t.str.count("```").to_numpy(float))}


@dataclass
class PairInputs:
    """Per-side features (``a``, ``b``: (n, d), the same columns for both) and order-free features (``z``)."""

    a: np.ndarray
    b: np.ndarray
    z: np.ndarray
    side_weight: np.ndarray | None = None   # per-column scale after standardising (< 1: a stronger penalty)
    pair_weight: np.ndarray | None = None

    def swapped(self) -> "PairInputs":
        """The inputs of the A/B-swapped rows."""
        return PairInputs(self.b, self.a, self.z, self.side_weight, self.pair_weight)

    def take(self, rows: np.ndarray) -> "PairInputs":
        """A subset of rows."""
        return PairInputs(self.a[rows], self.b[rows], self.z[rows], self.side_weight, self.pair_weight)


def fit_components(emb: dict[str, np.ndarray], k: int) -> np.ndarray:
    """(k, hidden) principal directions of the distinct prompt and response vectors (no labels used)."""
    allv = np.unique(np.vstack([emb[s] for s in SIDES]), axis=0).astype(np.float64)
    allv -= allv.mean(0)
    return np.linalg.svd(allv, full_matrices=False)[2][:k].astype(np.float32)


def pair_inputs(df: pd.DataFrame, emb: dict[str, np.ndarray], components: np.ndarray | None = None,
                emb_scale: float = 1.0) -> PairInputs:
    """Side features [P e_s, P (e_s - e_p), lengths, cos(e_s, e_p)] and order-free [|P (e_a - e_b)|, cos(e_a, e_b), ...].

    ``components`` (k, hidden) projects the vectors onto k directions (:func:`fit_components`); None keeps them whole.
    """
    texts = side_texts(df)
    cnt = {s: _counts(texts[s]) for s in SIDES}
    proj = (lambda x: x @ components.T if components is not None else x)  # noqa: E731
    p = emb["p"]
    side = {}
    for s in ("a", "b"):
        e = emb[s]
        scal = dict(cnt[s])
        scal["len_vs_prompt"] = cnt[s]["log_chars"] - cnt["p"]["log_chars"]
        scal["cos_prompt"] = (e * p).sum(1)
        side[s] = np.hstack([proj(e), proj(e - p), np.column_stack([scal[k] for k in SCALARS])]).astype(np.float32)
    a, b = emb["a"], emb["b"]
    same = (texts["a"].to_numpy() == texts["b"].to_numpy()).astype(np.float32)
    z = np.hstack([np.abs(proj(a - b)), np.column_stack([(a * b).sum(1), same, cnt["p"]["log_chars"],
                                                         np.abs(cnt["a"]["log_chars"] - cnt["b"]["log_chars"])])])
    k = side["a"].shape[1] - len(SCALARS)
    side_w = np.r_[np.full(k, emb_scale), np.ones(len(SCALARS))].astype(np.float32)
    pair_w = np.r_[np.full(z.shape[1] - 4, emb_scale), np.ones(4)].astype(np.float32)
    return PairInputs(side["a"], side["b"], z.astype(np.float32), side_w, pair_w)


# ---------------------------------------------------------------- the swap-symmetric head

def build_head(d_side: int, d_pair: int, layers: int = 1, hidden: int = 64, dropout: float = 0.1,
               symmetric: bool = True) -> Any:
    """A head over both sides' features: swap-symmetric (shared weights per side, :class:`PairHead`) or order-aware."""
    from torch import nn

    class PairHead(nn.Module):
        """Symmetric: logits = [u(x_a, x_b), u(x_b, x_a), t(x_a, x_b, z)], so swapping the sides swaps the first two
        exactly. Order-aware (``symmetric=False``): one linear read-out of [h_a, h_b, z], which can learn a position
        bias (the seeds' swap-TTA factor needs a head that TTA can change)."""

        def __init__(self) -> None:
            super().__init__()
            self.layers, self.symmetric = layers, symmetric
            if layers == 1:   # linear: u = w . x_s, t = v . [x_a + x_b, z]
                self.side = nn.Identity()
                width = d_side
            else:             # a shared MLP per side, then linear read-outs
                mods: list[nn.Module] = []
                width = d_side
                for _ in range(layers - 1):
                    mods += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.GELU()]
                    width = hidden
                self.side = nn.Sequential(*mods)
            if symmetric:
                self.win = nn.Linear(2 * width, 1)
                self.tie = nn.Linear(2 * width + d_pair, 1)
            else:
                self.out = nn.Linear(2 * width + d_pair, 3)

        def forward(self, xa: Any, xb: Any, z: Any) -> Any:
            import torch

            ha, hb = self.side(xa), self.side(xb)
            if not self.symmetric:
                return self.out(torch.cat([ha, hb, z], -1))
            ua = self.win(torch.cat([ha, ha - hb], -1))
            ub = self.win(torch.cat([hb, hb - ha], -1))
            t = self.tie(torch.cat([ha + hb, (ha - hb).abs(), z], -1))
            return torch.cat([ua, ub, t], -1)

    return PairHead()


@dataclass
class HeadConfig:
    """Training settings of the pairwise head (full-batch AdamW; small data, so every step sees every row)."""

    layers: int = 1
    hidden: int = 64
    dropout: float = 0.1
    l2: float = 1e-2          # penalty on the weights (not biases), added to the mean log loss
    steps: int = 300
    lr: float = 1e-2
    seed: int = 0
    symmetric: bool = True    # False: an order-aware read-out (see build_head)


def _standardise(inputs: PairInputs) -> dict[str, np.ndarray]:
    """Mean/std of the side features (over both sides: swap-invariant) and of the order-free ones."""
    both = np.vstack([inputs.a, inputs.b])
    sw = inputs.side_weight if inputs.side_weight is not None else 1.0
    pw = inputs.pair_weight if inputs.pair_weight is not None else 1.0
    return {"side_mean": both.mean(0), "side_std": (both.std(0) + 1e-6) / sw,
            "pair_mean": inputs.z.mean(0), "pair_std": (inputs.z.std(0) + 1e-6) / pw}


def _tensors(inputs: PairInputs, norm: dict[str, np.ndarray]) -> tuple[Any, Any, Any]:
    import torch

    f = lambda x, m, s: torch.from_numpy(((x - norm[m]) / norm[s]).astype(np.float32))  # noqa: E731
    return (f(inputs.a, "side_mean", "side_std"), f(inputs.b, "side_mean", "side_std"),
            f(inputs.z, "pair_mean", "pair_std"))


def init_prior(head: Any, targets: Any) -> None:
    """Start the read-outs at the class prior (a symmetric head's A and B share one bias: their mean), small weights."""
    import torch

    with torch.no_grad():
        prior = targets.mean(0).clamp(min=1e-3).log()
        if head.symmetric:
            head.win.bias.fill_(float((prior[0] + prior[1]) / 2))
            head.tie.bias.fill_(float(prior[2]))
            outs = (head.win, head.tie)
        else:
            head.out.bias.copy_(prior)
            outs = (head.out,)
        for lin in outs:
            lin.weight.mul_(0.1)


def fit_head(inputs: PairInputs, targets: np.ndarray, cfg: HeadConfig) -> tuple[Any, dict[str, np.ndarray]]:
    """Train a head on (n, 3) targets; returns (model in eval mode, standardisation state)."""
    import torch

    torch.manual_seed(cfg.seed)
    norm = _standardise(inputs)
    xa, xb, z = _tensors(inputs, norm)
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    head = build_head(xa.shape[1], z.shape[1], cfg.layers, cfg.hidden, cfg.dropout, cfg.symmetric)
    init_prior(head, y)
    weights = [p for n, p in head.named_parameters() if n.endswith("weight")]
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    head.train()
    for _ in range(cfg.steps):
        opt.zero_grad()
        logp = torch.log_softmax(head(xa, xb, z), -1)
        loss = -(y * logp).sum(-1).mean() + cfg.l2 * sum((w ** 2).sum() for w in weights)
        loss.backward()
        opt.step()
    return head.eval(), norm


def head_probs(head: Any, norm: dict[str, np.ndarray], inputs: PairInputs, tta: bool = False) -> np.ndarray:
    """(n, 3) probabilities of a trained head; ``tta``: averaged with the swapped rows' (A/B columns swapped back)."""
    import torch

    with torch.no_grad():
        probs = torch.softmax(head(*_tensors(inputs, norm)), -1).double().numpy()
        if tta:
            probs = tta_average(probs, torch.softmax(head(*_tensors(inputs.swapped(), norm)), -1).double().numpy())
    return probs


def tta_average(probs: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Swap TTA: the rows' probabilities averaged with those of the A/B-swapped rows, swapped back."""
    return (probs + swap_probs(swapped)) / 2


def l2_grid(text: str | Sequence[float]) -> list[float]:
    """The weight-penalty candidates from a list or a comma string ("0.003,0.01")."""
    vals = [float(t) for t in text.split(",") if t.strip()] if isinstance(text, str) else [float(v) for v in text]
    if not vals or any(v < 0 for v in vals):
        raise ValueError(f"l2 candidates must be non-negative numbers, got {text!r}")
    return vals


def _replace(cfg: HeadConfig, **kw: Any) -> HeadConfig:
    return dataclasses.replace(cfg, **kw)


# ---------------------------------------------------------------- saved heads: writing and predicting from a run

HEAD_FILE = "pairwise.json"


def save_heads(model_dir: str | Path, heads: list[tuple[int, Any, dict[str, np.ndarray], int]], cfg: HeadConfig,
               components: dict[int, np.ndarray | None], settings: dict[str, Any]) -> Path:
    """Each fold's head (safetensors), standardisation and projection (.npy), and ``pairwise.json``."""
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)

    def npy(arr: np.ndarray, name: str) -> None:
        with atomic_path(model_dir / name) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    folds = []
    for k, head, norm, n_comp in heads:
        with atomic_path(model_dir / f"head_fold{k}.safetensors") as tmp:
            save_file({n: t.detach().contiguous() for n, t in head.state_dict().items()}, str(tmp))
        for name, arr in norm.items():
            npy(arr, f"norm_fold{k}_{name}.npy")
        folds.append({"fold": k, "layers": head.layers, "components": n_comp})
    for n_comp in sorted({f["components"] for f in folds}):
        if components.get(n_comp) is not None:
            npy(components[n_comp], f"components_{n_comp}.npy")
    state = {"format": 1, "head": dataclasses.asdict(cfg), "folds": folds, **settings}
    return write_json(state, model_dir / HEAD_FILE)


def load_heads(model_dir: str | Path) -> tuple[dict[str, Any], list[tuple[Any, dict[str, np.ndarray], int]],
                                               dict[int, np.ndarray | None]]:
    """(settings, [(head, standardisation, projection size)] per fold, projections) from :func:`save_heads`."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    state = read_json(model_dir / HEAD_FILE)
    comps: dict[int, np.ndarray | None] = {}
    heads = []
    for f in state["folds"]:
        k, n_comp = f["fold"], int(f["components"])
        if n_comp not in comps:
            comps[n_comp] = np.load(model_dir / f"components_{n_comp}.npy", allow_pickle=False) if n_comp else None
        norm = {n: np.load(model_dir / f"norm_fold{k}_{n}.npy", allow_pickle=False)
                for n in ("side_mean", "side_std", "pair_mean", "pair_std")}
        h = state["head"]
        head = build_head(len(norm["side_mean"]), len(norm["pair_mean"]), f["layers"], h["hidden"], h["dropout"],
                          h.get("symmetric", True))   # runs saved before order-aware heads: symmetric
        head.load_state_dict(load_file(str(model_dir / f"head_fold{k}.safetensors")))
        heads.append((head.eval(), norm, n_comp))
    return state, heads, comps


def encoder_folder(backbone: str) -> Path:
    """The local folder of a pairwise run's encoder: the packaged MiniLM for ``minilm``, else a folder or input name."""
    return Path(resolve_backbone(backbone, allow_download=False))


def load_predictor(run_dir: str | Path, cache_dir: str | Path | None = None) -> Any:
    """Predictor of a saved pairwise run: the frozen encoder reads each text once, the fold heads are averaged."""
    state, heads, comps = load_heads(RunPaths(Path(run_dir)).model_dir)
    encoder = load_encoder(encoder_folder(state["backbone"]))
    emb_kw = {k: state[k] for k in ("window_tokens", "max_windows", "max_chars")}
    memory: dict[str, np.ndarray] = {}   # texts seen by this predictor (TTA and probes repeat them) are read once

    def predict(df: pd.DataFrame) -> np.ndarray:
        emb = embed_frame(df, cache_dir, encoder=encoder, progress=False, memory=memory, **emb_kw)
        inputs = {k: pair_inputs(df, emb, c, state["emb_scale"]) for k, c in comps.items()}
        return np.mean([head_probs(h, n, inputs[k]) for h, n, k in heads], axis=0)

    return predict


# ---------------------------------------------------------------- features for the GBDT baseline (02)

def embedding_features(emb: dict[str, np.ndarray], components: np.ndarray) -> pd.DataFrame:
    """Prompt-response cosines, the A-B cosine and each response's projection (A, B, A - B) as baseline columns.

    Named like :mod:`kagglelib.features` columns (``_a``/``_b`` swap, ``_diff``/``_logratio`` negate under A/B swap).
    """
    p, a, b = emb["p"], emb["a"], emb["b"]
    out = dict(pair_forms((p * a).sum(1), (p * b).sum(1), "cemb_prompt"))
    out["cemb_ab"] = (a * b).sum(1).astype(np.float64)
    pa, pb = a @ components.T, b @ components.T
    for j in range(len(components)):
        out.update({f"cemb_pc{j}_a": pa[:, j], f"cemb_pc{j}_b": pb[:, j], f"cemb_pc{j}_diff": pa[:, j] - pb[:, j]})
    return pd.DataFrame(out).astype(np.float32)
