"""Matplotlib figures for the notebooks; each function returns a Figure and saves it when given a path."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .data import LABEL_NAMES
from .io import save_figure

COLORS = {"A": "#4C72B0", "B": "#DD8452", "tie": "#8C8C8C"}


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    """Tighten the layout and save as PNG when a path is given."""
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def label_balance(table: pd.DataFrame, path: str | Path | None = None, title: str = "Outcomes") -> plt.Figure:
    """Bar chart of outcome shares (table from eda.label_balance)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(table.index, table["share"], color=[COLORS[k] for k in table.index])
    for i, (share, rows) in enumerate(zip(table["share"], table["rows"])):
        ax.text(i, share, f"{share:.1%}\n(n={rows})", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(table["share"]) * 1.3)
    ax.set_ylabel("share of battles")
    ax.set_title(title)
    return _finish(fig, path)


def length_histograms(lengths: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Histograms of prompt/response lengths (chars, log scale) and of turns per battle."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    bins = np.logspace(0, np.log10(max(lengths[["prompt_chars", "response_a_chars", "response_b_chars"]].max().max(),
                                       10) + 1), 40)
    for col, label in (("prompt_chars", "prompt"), ("response_a_chars", "response A"),
                       ("response_b_chars", "response B")):
        axes[0].hist(lengths[col] + 1, bins=bins, histtype="step", linewidth=1.5, label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("characters (+1, log scale)")
    axes[0].set_ylabel("rows")
    axes[0].legend()
    turns = lengths["turns"].value_counts().sort_index()
    axes[1].bar(turns.index.astype(str), turns.to_numpy(), color="#55A868")
    axes[1].set_xlabel("turns per battle")
    axes[1].set_ylabel("rows")
    return _finish(fig, path)


def outcome_rates(table: pd.DataFrame, xlabel: str, path: str | Path | None = None,
                  title: str = "") -> plt.Figure:
    """Lines of A/B/tie rates per bin (tables from eda.verbosity_bias / tie_vs_similarity)."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(table))
    for label in LABEL_NAMES:
        ax.plot(x, table[label], marker="o", color=COLORS[label], label=f"{label} rate")
    ax.set_xticks(x, [str(i) for i in table.index], rotation=30, ha="right", fontsize=7)
    for i, n in enumerate(table["rows"]):
        ax.text(i, 0.02, f"n={n}", ha="center", fontsize=7, color="#555555")
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of battles")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _finish(fig, path)


def model_win_rates(table: pd.DataFrame, path: str | Path | None = None, top: int = 25) -> plt.Figure:
    """Horizontal bars of per-model win rate (ties count half), with battle counts."""
    table = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(table) + 1)))
    ax.barh(table.index.astype(str), table["win_rate"], color="#4C72B0")
    for i, (rate, n) in enumerate(zip(table["win_rate"], table["battles"])):
        ax.text(rate, i, f" {rate:.2f} (n={n})", va="center", fontsize=7)
    ax.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate (ties = 0.5)")
    ax.set_title("Per-model win rate")
    return _finish(fig, path)
