"""Matplotlib figures for the notebooks; each function returns a Figure and saves it when given a path."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.io import save_figure
from ..data.frame import LABEL_NAMES
from .calibration import confidence_bins, reliability_table
from .metrics import log_loss


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


def ablation_points(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Held-out log loss per run with its 95% bootstrap interval; smoke runs hatched grey, prior as a line."""
    table = table.dropna(subset=["log_loss"]).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))
    colors = ["#AAAAAA" if s else "#4C72B0" for s in table["smoke"]]
    for yi, (ll, lo, hi, c) in enumerate(zip(table["log_loss"], table["ll_low"], table["ll_high"], colors)):
        ax.errorbar(ll, yi, xerr=[[ll - lo], [hi - ll]], fmt="none", ecolor=c, capsize=3)
    ax.scatter(table["log_loss"], y, c=colors, zorder=3)
    labels = [f"{r} (smoke)" if s else str(r) for r, s in zip(table["run"], table["smoke"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(np.log(3), color="black", linestyle=":", linewidth=1, label="uniform 1.0986")
    if "prior_log_loss" in table.columns and table["prior_log_loss"].notna().any():
        ax.axvline(table["prior_log_loss"].dropna().iloc[0], color="grey", linestyle="--", linewidth=1,
                   label="class prior")
    ax.set_xlabel("held-out log loss (95% bootstrap interval over rows; overlapping = not distinguishable)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _finish(fig, path)


def factor_effects(table: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Each run's out-of-fold log-loss difference to the run it is compared with, with its 95% paired bootstrap interval."""
    table = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.4))
    y = np.arange(len(table))
    ax.errorbar(table["diff"], y, xerr=[table["diff"] - table["diff_low"], table["diff_high"] - table["diff"]],
                fmt="o", color="#4C72B0", capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{c[:60]}\n(vs {v})" for c, v in zip(table["changed"], table["vs"])], fontsize=7)
    ax.set_xlabel("out-of-fold log loss minus the compared run's, same rows (95% paired bootstrap; < 0 = better)")
    return _finish(fig, path)


def reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path | None = None,
                n_bins: int = 10) -> plt.Figure:
    """Reliability diagram of the top-class confidence, one line per run."""
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1)
    for name, (labels, probs) in curves.items():
        t = confidence_bins(labels, probs, n_bins)
        t = t[t["n"] >= 5]
        ax.plot(t["confidence"], t["accuracy"], marker="o", label=name)
    ax.set_xlim(0.3, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (bins with >= 5 rows)")
    ax.legend(fontsize=7)
    return _finish(fig, path)


def bias_bars(frame: pd.DataFrame, path: str | Path | None = None) -> plt.Figure:
    """Bias probe shifts per run, without and with swap TTA."""
    cols = ["flip_rate", "mean_abs_ab_gap", "verbosity_shift", "model_length_slope", "assertiveness_shift",
            "self_claim_shift"]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.8 * len(cols), 0.4 * len(frame) + 2.0), sharey=True)
    labels = [f"{r} [{m}]" for r, m in zip(frame["run"], frame["mode"])]
    for ax, col in zip(axes, cols):
        ax.barh(labels, frame[col], color=["#4C72B0" if m == "raw" else "#55A868" for m in frame["mode"]])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(col, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.locator_params(axis="x", nbins=3)
        if col == "model_length_slope" and "human_length_slope" in frame.columns:
            ax.axvline(frame["human_length_slope"].iloc[0], color="#C44E52", linestyle="--", label="human labels")
            ax.legend(fontsize=7)
    return _finish(fig, path)


def feature_importance(importance: pd.Series, top: int = 30, title: str = "feature importance") -> plt.Figure:
    """Horizontal bar chart of the top features."""
    imp = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(imp) + 1))
    ax.barh(imp.index, imp.to_numpy(), color="tab:blue")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def reliability_per_class(labels: np.ndarray, curves: dict[str, np.ndarray], n_bins: int = 10) -> plt.Figure:
    """Reliability diagram per class (A, B, tie) for each named set of probabilities."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    for name, probs in curves.items():
        tab = reliability_table(labels, probs, n_bins)
        for ax, cls in zip(axes, LABEL_NAMES):
            t = tab[tab["class"] == cls]
            ax.plot(t["mean_pred"], t["observed"], marker="o", label=f"{name} ({log_loss(labels, probs):.4f})")
    for ax, cls in zip(axes, LABEL_NAMES):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"class {cls}")
        ax.set_xlabel("mean predicted probability")
    axes[0].set_ylabel("observed frequency")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_curve(train_hist: list[dict], eval_hist: list[dict], prior: float, title: str) -> plt.Figure:
    """Train loss and validation log loss against optimizer steps, with the class-prior baseline."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if train_hist:
        ax.plot([r["step"] for r in train_hist], [r["loss"] for r in train_hist], label="train loss", alpha=0.8)
    if eval_hist:
        ax.plot([r["step"] for r in eval_hist], [r["valid_log_loss"] for r in eval_hist], "o-", label="valid log loss")
    ax.axhline(prior, color="grey", linestyle="--", label=f"class prior {prior:.4f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("log loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
