"""Exploratory tables of arena battles: labels, lengths, verbosity and position bias, ties, models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.io import save_figure, write_json
from ..data.frame import LABEL_NAMES
from ..data.load import load_arena
from ..data.text import REFUSAL_PATTERN, join_turns
from ..run.config import RunConfig, save_config
from ..run.folder import Run
from ..run.layout import EDA_FIGURES
from ..run.store import Staging
from ..scoring import plots
from ..scoring.plots import length_histograms, outcome_rates


@dataclass
class EdaConfig(RunConfig):
    """Notebook 01 parameters (EDA runs the same on every profile)."""

    run_name: str = "eda"            # figures and metrics.json go to <output_dir>/runs/<run_name>/
    min_battles: int = 10            # models with fewer battles are left out of the per-model table


def length_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-row chars and turns of the prompt and both responses, plus the A-minus-B char difference."""
    out = pd.DataFrame({"id": df["id"].to_numpy()})
    for col in ("prompt", "response_a", "response_b"):
        out[f"{col}_chars"] = join_turns(df[col]).str.len().to_numpy()
    out["turns"] = df["prompt"].map(len).to_numpy()
    out["chars_diff"] = out["response_a_chars"] - out["response_b_chars"]
    return out


def label_balance(df: pd.DataFrame) -> pd.DataFrame:
    """Count and share of each outcome."""
    counts = pd.Series(np.bincount(df["label"], minlength=3), index=list(LABEL_NAMES), name="rows")
    return pd.DataFrame({"rows": counts, "share": counts / counts.sum()})


def _outcome_rates(labels: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """Share of A wins / B wins / ties and row count per group."""
    table = pd.crosstab(groups, labels.map(dict(enumerate(LABEL_NAMES))), normalize="index")
    table = table.reindex(columns=list(LABEL_NAMES), fill_value=0.0)
    table["rows"] = groups.value_counts().reindex(table.index).to_numpy()
    return table


def verbosity_bias(df: pd.DataFrame, n_bins: int = 7) -> pd.DataFrame:
    """Outcome rates per quantile bin of (len A - len B) in chars: does the longer answer win?"""
    lengths = length_table(df)
    bins = pd.qcut(lengths["chars_diff"], q=n_bins, duplicates="drop").rename("chars A - chars B")
    return _outcome_rates(df["label"].reset_index(drop=True), bins.reset_index(drop=True))


def longer_wins_rate(df: pd.DataFrame) -> dict[str, float]:
    """Among decisive battles with different lengths, how often the longer response wins (+ 95% CI)."""
    lengths = length_table(df)
    decisive = (df["label"].to_numpy() != 2) & (lengths["chars_diff"].to_numpy() != 0)
    longer_a = lengths["chars_diff"].to_numpy()[decisive] > 0
    a_won = df["label"].to_numpy()[decisive] == 0
    rate, low, high = share_interval(int((longer_a == a_won).sum()), int(decisive.sum()))
    return {"rows": int(decisive.sum()), "longer_wins": rate, "ci_low": low, "ci_high": high}


def position_rates(df: pd.DataFrame) -> dict[str, float]:
    """A-wins vs B-wins among decisive battles, with a 95% normal-approximation CI on the A share."""
    labels = df["label"].to_numpy()
    a, b = int((labels == 0).sum()), int((labels == 1).sum())
    share, low, high = share_interval(a, a + b)
    return {"a_wins": a, "b_wins": b, "a_share_of_decisive": share, "ci_low": low, "ci_high": high}


def share_interval(hits: int, n: int) -> tuple[float, float, float]:
    """``hits / n`` with its 95% normal-approximation interval (NaNs when n is 0)."""
    if not n:
        return float("nan"), float("nan"), float("nan")
    share = hits / n
    half = 1.96 * np.sqrt(share * (1 - share) / n)
    return share, share - half, share + half


def response_similarity(df: pd.DataFrame) -> np.ndarray:
    """Jaccard similarity of the lower-cased word sets of response A and response B (1 for two empty ones)."""
    words_a = join_turns(df["response_a"]).str.lower().str.findall(r"\w+").map(set)
    words_b = join_turns(df["response_b"]).str.lower().str.findall(r"\w+").map(set)
    return np.array([len(a & b) / len(a | b) if a | b else 1.0 for a, b in zip(words_a, words_b)])


def tie_vs_similarity(df: pd.DataFrame, edges: tuple[float, ...] = (0, .1, .2, .3, .4, .5, .7, 1.0)) -> pd.DataFrame:
    """Outcome rates per bin of response A/B word-set similarity: do similar answers tie more?"""
    sim = pd.Series(response_similarity(df), name="similarity")
    bins = pd.cut(sim, bins=list(edges), include_lowest=True)
    return _outcome_rates(df["label"].reset_index(drop=True), bins)


def model_win_rates(df: pd.DataFrame, min_battles: int = 10) -> pd.DataFrame:
    """Per model: battles, wins, losses, ties and win rate (ties count half), models with enough battles."""
    if not (df["model_a"].astype(bool) & df["model_b"].astype(bool)).any():
        return pd.DataFrame(columns=["battles", "wins", "losses", "ties", "win_rate"])
    labels = df["label"].to_numpy()
    long = pd.DataFrame({
        "model": np.concatenate([df["model_a"].to_numpy(), df["model_b"].to_numpy()]),
        "win": np.concatenate([labels == 0, labels == 1]),
        "loss": np.concatenate([labels == 1, labels == 0]),
        "tie": np.concatenate([labels == 2, labels == 2]),
    })
    table = long.groupby("model").agg(battles=("win", "size"), wins=("win", "sum"), losses=("loss", "sum"),
                                      ties=("tie", "sum"))
    table["win_rate"] = (table["wins"] + 0.5 * table["ties"]) / table["battles"]
    return table[table["battles"] >= min_battles].sort_values("win_rate", ascending=False)


def turn_table(df: pd.DataFrame) -> pd.DataFrame:
    """Outcome rates for single-turn vs multi-turn battles."""
    kind = df["prompt"].map(lambda t: "multi-turn" if len(t) > 1 else "single-turn").reset_index(drop=True)
    return _outcome_rates(df["label"].reset_index(drop=True), kind)


def special_responses(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with an empty response, identical responses, or a refusal on one side, and their outcomes."""
    a, b = join_turns(df["response_a"]), join_turns(df["response_b"])
    ref_a, ref_b = a.str.contains(REFUSAL_PATTERN), b.str.contains(REFUSAL_PATTERN)
    masks = {
        "empty response (either side)": (a.str.strip() == "") | (b.str.strip() == ""),
        "identical responses": a == b,
        "refusal in A only": ref_a & ~ref_b,
        "refusal in B only": ref_b & ~ref_a,
        "refusal in both": ref_a & ref_b,
    }
    rows = []
    labels = df["label"].to_numpy() if "label" in df.columns else None
    for name, mask in masks.items():
        m = mask.to_numpy()
        row = {"case": name, "rows": int(m.sum()), "share": float(m.mean())}
        if labels is not None:
            for k, label in enumerate(LABEL_NAMES):
                row[f"{label}_rate"] = float((labels[m] == k).mean()) if m.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("case")


def summary(train: pd.DataFrame, test: pd.DataFrame | None = None) -> dict:
    """Headline figures of one EDA run (written as the run's metrics.json)."""
    lengths = length_table(train)
    out = {
        "n_train": len(train),
        "n_test": len(test) if test is not None else None,
        "label_share": label_balance(train)["share"].round(4).to_dict(),
        "multi_turn_share": float((lengths["turns"] > 1).mean()),
        "median_response_chars": float(np.median(lengths[["response_a_chars", "response_b_chars"]])),
        "position": position_rates(train),
        "longer_wins": longer_wins_rate(train),
        "n_models": int(pd.concat([train["model_a"], train["model_b"]]).replace("", np.nan).nunique()),
        "load_report_train": train.attrs["load_report"].summary() if "load_report" in train.attrs else "",
    }
    if test is not None and "load_report" in test.attrs:
        out["load_report_test"] = test.attrs["load_report"].summary()
    return out


def run_eda(cfg: EdaConfig) -> dict[str, Any]:
    """Every EDA table and figure of the train file, written to ``cfg.run_dir`` with the summary as metrics.json.

    Written in a staging folder and committed atomically with its manifest, like every run (:mod:`kagglelib.runs`).
    """
    with Run.create(cfg.output_dir, cfg.run_name) as stage:
        out = _run_eda(cfg, stage)
    return {**out, "run_dir": stage.final}


def _run_eda(cfg: EdaConfig, stage: Staging) -> dict[str, Any]:
    run_dir = stage.path
    save_config(cfg, run_dir)
    train, test = load_arena(cfg.train_path), load_arena(cfg.test_path)
    if "label" not in train.columns:
        raise ValueError(f"{cfg.train_path}: no winner columns, nothing to analyse")
    tables = {"label_balance": label_balance(train), "lengths": length_table(train),
              "verbosity_bias": verbosity_bias(train), "longer_wins": longer_wins_rate(train),
              "position": pd.Series(position_rates(train)), "tie_vs_similarity": tie_vs_similarity(train),
              "model_win_rates": model_win_rates(train, min_battles=cfg.min_battles), "turns": turn_table(train),
              "special_responses": special_responses(train)}
    figures = {
        "label_balance": plots.label_balance(tables["label_balance"], title=f"Outcomes (n={len(train)})"),
        "lengths": length_histograms(tables["lengths"]),
        "verbosity_bias": outcome_rates(tables["verbosity_bias"], "chars A - chars B (quantile bins)",
                                              title="Verbosity bias"),
        "tie_vs_similarity": outcome_rates(tables["tie_vs_similarity"], "response A/B word-set similarity",
                                                 title="Ties vs. similarity"),
    }
    if len(tables["model_win_rates"]):   # no model names (e.g. a test-layout file): no per-model figure
        figures["model_win_rates"] = plots.model_win_rates(tables["model_win_rates"])
    for name, fig in figures.items():
        save_figure(fig, run_dir / EDA_FIGURES[name])
        plt.close(fig)   # closed so a notebook shows each once, when it displays the returned figure
    summary_ = summary(train, test)
    write_json(summary_, stage.metrics_file)
    return {"run_dir": run_dir, "summary": summary_, "tables": tables, "figures": figures}
