"""Training the last feed-forward block with the pairwise head, one outer fold at a time (04's ``pairwise_tune="ffn"``).

Per outer fold: the head starts from the frozen fit (the candidate the frozen inner CV chose on this fold's training
rows), then head and block are trained together with mini-batches for a fixed ``epochs`` on the fold's training
rows. The scored fold is never looked at. (Choosing the epochs on an inner holdout, then refitting, was tried: it
cost 3x the time on 2 cores; its folds chose 0, 4, 3, 2, 3 epochs, so the fixed default is 3.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..models import pairwise, tune


@dataclass
class TuneConfig:
    """How the block is trained: LoRA (``use_lora``, rank, alpha, init) or all its weights; optimiser settings."""

    use_lora: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    init: str = "default"     # default | pissa | pissa_niter_4
    epochs: int = 3           # passes over the fold's training rows
    lr: float = 1e-3          # Adam learning rate of the block's trainable weights
    head_lr: float = 1e-3     # Adam learning rate of the (warm-started) head
    tokens: int = 16          # tokens sampled per text per step
    batch: int = 64           # rows per step
    seed: int = 0


@dataclass
class Sides:
    """Which text (row of the token states) each row's prompt, response A and response B is."""

    p: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def texts(self, rows: np.ndarray) -> np.ndarray:
        """The distinct texts of these rows."""
        return np.unique(np.concatenate([self.p[rows], self.a[rows], self.b[rows]]))


def _vectors(pool: Any, sides: Sides, rows: np.ndarray) -> dict[str, Any]:
    """Per-side vectors of ``rows`` from ``pool(texts) -> (len(texts), hidden)``, each distinct text pooled once."""
    import torch

    texts = sides.texts(rows)
    vecs = pool(texts)
    where = {t: i for i, t in enumerate(texts)}
    pick = lambda side: vecs[torch.tensor([where[t] for t in side[rows]])]  # noqa: E731
    return {"p": pick(sides.p), "a": pick(sides.a), "b": pick(sides.b)}


def predict_rows(ffn: Any, head: Any, norm: dict[str, np.ndarray], states: tune.TokenStates, sides: Sides,
                 inputs: pairwise.PairInputs, rows: np.ndarray, components: np.ndarray | None,
                 tta: bool = False) -> np.ndarray:
    """(len(rows), 3) probabilities with every token pooled through ``ffn``."""

    e = _vectors(lambda t: tune.pooled_exact(ffn, states, t), sides, rows)
    return tune.head_forward(head, inputs.take(rows), norm, e, components, tta)


def train_block(base: Any, states: tune.TokenStates, sides: Sides, inputs: pairwise.PairInputs,
                targets: np.ndarray, rows: np.ndarray, head_cfg: pairwise.HeadConfig, cfg: TuneConfig,
                components: np.ndarray | None) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """(block, head, standardisation) trained together on ``rows`` for ``cfg.epochs``, the head from the frozen fit."""
    import torch

    head, norm = pairwise.fit_head(inputs.take(rows), targets[rows], head_cfg)
    ffn = tune.adapt(base, cfg.use_lora, cfg.r, cfg.alpha, cfg.dropout, cfg.init, cfg.seed)
    block_params = [p for p in ffn.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": block_params, "lr": cfg.lr},
                            {"params": list(head.parameters()), "lr": cfg.head_lr}])
    weights = [p for n, p in head.named_parameters() if n.endswith("weight")]
    rng = np.random.default_rng(cfg.seed)
    y = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    head.train()
    for _ in range(cfg.epochs):
        order = rows[rng.permutation(len(rows))]
        for s in range(0, len(order), cfg.batch):
            batch = order[s:s + cfg.batch]
            e = _vectors(lambda t: tune.pooled_sampled(ffn, base, states, t, cfg.tokens, rng), sides, batch)
            logp = torch.log_softmax(head(*tune.pair_tensors(inputs.take(batch), norm, e, components)), -1)
            loss = -(y[batch] * logp).sum(-1).mean() + head_cfg.l2 * sum((w ** 2).sum() for w in weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return ffn, head.eval(), norm


def tune_fold(base: Any, states: tune.TokenStates, sides: Sides, inputs: pairwise.PairInputs, targets: np.ndarray,
              train_rows: np.ndarray, head_cfg: pairwise.HeadConfig, cfg: TuneConfig,
              components: np.ndarray | None) -> dict[str, Any]:
    """One outer fold: block and head trained on ``train_rows``; returns the merged block and the head."""
    ffn, head, norm = train_block(base, states, sides, inputs, targets, train_rows, head_cfg, cfg, components)
    return {"ffn": tune.merged(ffn), "head": head, "norm": norm}
