"""Exploratory tables of arena battles: labels, lengths, verbosity and position bias, ties, models."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .data import LABEL_NAMES

# Phrases that open a refusal or an AI disclaimer; matched case-insensitively anywhere in a response.
REFUSAL_RE = re.compile(
    r"\b(?:i'?m sorry|i am sorry|i apologi[sz]e|i can(?:no|')t (?:help|assist|provide|comply|fulfil)|"
    r"i'?m (?:not able|unable) to|i am (?:not able|unable) to|as an ai|as a language model|"
    r"i cannot (?:help|assist|provide|comply)|i won'?t be able to)", re.IGNORECASE)


def joined(df: pd.DataFrame, col: str) -> pd.Series:
    """All turns of a text column joined by blank lines, one string per row."""
    return df[col].map(lambda turns: "\n\n".join(turns))


def length_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per-row chars and turns of the prompt and both responses, plus the A-minus-B char difference."""
    out = pd.DataFrame({"id": df["id"].to_numpy()})
    for col in ("prompt", "response_a", "response_b"):
        out[f"{col}_chars"] = joined(df, col).str.len().to_numpy()
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
    n = int(decisive.sum())
    rate = float(np.mean(longer_a == a_won)) if n else float("nan")
    half = 1.96 * np.sqrt(rate * (1 - rate) / n) if n else float("nan")
    return {"rows": n, "longer_wins": rate, "ci_low": rate - half, "ci_high": rate + half}


def position_rates(df: pd.DataFrame) -> dict[str, float]:
    """A-wins vs B-wins among decisive battles, with a 95% normal-approximation CI on the A share."""
    labels = df["label"].to_numpy()
    a, b = int((labels == 0).sum()), int((labels == 1).sum())
    share = a / (a + b) if a + b else float("nan")
    half = 1.96 * np.sqrt(share * (1 - share) / (a + b)) if a + b else float("nan")
    return {"a_wins": a, "b_wins": b, "a_share_of_decisive": share, "ci_low": share - half, "ci_high": share + half}


def response_similarity(df: pd.DataFrame) -> np.ndarray:
    """Jaccard similarity of the lower-cased word sets of response A and response B (1 for two empty ones)."""
    words_a = joined(df, "response_a").str.lower().str.findall(r"\w+").map(set)
    words_b = joined(df, "response_b").str.lower().str.findall(r"\w+").map(set)
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
    a, b = joined(df, "response_a"), joined(df, "response_b")
    ref_a, ref_b = a.str.contains(REFUSAL_RE), b.str.contains(REFUSAL_RE)
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
