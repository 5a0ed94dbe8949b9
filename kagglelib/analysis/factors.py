"""The seeds' factors on real weights (notebook 06): variants of a reference run, one setting changed each, trained
on every fold, and each variant's out-of-fold log-loss difference to the reference with a paired bootstrap interval.

``factors`` is a ``;``-separated list of variants, each a ``,``-separated list of ``field=value`` overrides of the
reference run's saved config (``"head_layers=3;pairwise_components=0"``); a variant run is named
``<reference>__<field>-<value>``. Only rows both runs held out are compared, row by row (paired).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..run.config import METADATA_KEYS, make_config
from ..run.folder import Run
from ..run.layout import heldout_predictions, labels_and_probs
from ..scoring import metrics
from ..training.config import CONFIG_CLASSES
from ..training.fit import train


def parse_factors(text: str) -> list[dict[str, Any]]:
    """``"a=1,b=x;c=2"`` -> ``[{"a": 1, "b": "x"}, {"c": 2}]`` (values read as JSON where they parse)."""
    out = []
    for variant in (v.strip() for v in str(text).split(";")):
        if not variant:
            continue
        over = {}
        for item in (i.strip() for i in variant.split(",")):
            if "=" not in item:
                raise ValueError(f"factors: {item!r} in {text!r} is not field=value")
            key, value = (s.strip() for s in item.split("=", 1))
            try:
                over[key] = json.loads(value)
            except json.JSONDecodeError:
                over[key] = value
        out.append(over)
    return out


def variant_name(reference: str, overrides: dict[str, Any]) -> str:
    """``<reference>__<field>-<value>[__...]``."""
    return reference + "".join(f"__{k}-{v}" for k, v in overrides.items())


def train_variants(output_dir: str | Path, reference: str, factors: str) -> list[Path]:
    """Train each variant of the reference run (its saved config with the overrides); returns the run folders."""
    ref_dir = Path(output_dir) / "runs" / reference
    saved = Run.at(ref_dir).config
    cls = CONFIG_CLASSES[saved["config_class"]]
    base = {k: v for k, v in saved.items() if k not in METADATA_KEYS}
    base["output_dir"] = str(output_dir)
    dirs = []
    for over in parse_factors(factors):
        unknown = sorted(set(over) - set(base))
        if unknown:
            raise ValueError(f"factors: {unknown} are not settings of {reference}'s {cls.__name__}")
        cfg = make_config(cls, **{**base, **over, "run_name": variant_name(reference, over), "progress": False})
        train(cfg)
        dirs.append(cfg.run_dir)
    return dirs


def paired_difference(labels: np.ndarray, ref: np.ndarray, other: np.ndarray, n: int = 1000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean per-row log-loss difference (other - reference) and its 95% paired bootstrap interval."""
    rows = np.arange(len(labels))
    d = (-np.log(metrics.normalise(other)[rows, labels])) - (-np.log(metrics.normalise(ref)[rows, labels]))
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


SKIP = set(METADATA_KEYS) | {"run_name", "output_dir", "progress", "derived_from"}


def changed_settings(ref_cfg: dict[str, Any], cfg: dict[str, Any]) -> str:
    """The settings in which a run's config differs from the reference's (metadata and names left out)."""
    if ref_cfg.get("config_class") != cfg.get("config_class"):   # another notebook: every field differs
        return f"another model: {cfg.get('config_class')}"
    return ", ".join(f"{k}={cfg.get(k)}" for k in _differing(ref_cfg, cfg)) or "(same settings)"


def _differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Settings both configs record with different values (one saved before a setting existed ran its default)."""
    return [k for k in sorted((set(a) & set(b)) - SKIP) if a[k] != b[k]]


def nearest(name: str, configs: dict[str, dict[str, Any]], reference: str) -> str:
    """The run this one is compared with: of the same notebook's runs, the one differing in the fewest settings
    (the reference on a tie), so ``lora_init=pissa`` on a LoRA variant is measured against that LoRA variant."""
    cfg = configs[name]
    same = [n for n, c in configs.items() if n != name and c.get("config_class") == cfg.get("config_class")]
    if reference not in same:
        return reference
    return min(same, key=lambda n: (len(_differing(configs[n], cfg)), n != reference, n))


def factor_table(run_dirs: list[Path], reference: str, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every run against its nearest run (:func:`nearest`; the reference for other notebooks' runs) on the rows both
    held out: log losses and the paired difference with its 95% interval (negative = better than the run it is
    compared with). Smoke runs are left out: they are not results."""
    by_name = {d.name: d for d in run_dirs}
    if reference not in by_name:
        return pd.DataFrame()
    runs = {n: Run.at(d) for n, d in by_name.items()}
    real = {n: r.config for n, r in runs.items() if not r.is_smoke}
    if reference not in real:
        return pd.DataFrame()
    rows = []
    for name, cfg in real.items():
        if name == reference:
            continue
        vs = nearest(name, real, reference)
        ref_preds, preds = heldout_predictions(by_name[vs]), heldout_predictions(by_name[name])
        common = ref_preds.merge(preds, on="id", suffixes=("_ref", ""))
        if not len(common):
            continue
        labels, probs = labels_and_probs(common)
        ref = common[[f"{c}_ref" for c in ("winner_model_a", "winner_model_b", "winner_tie")]].to_numpy(float)
        diff, low, high = paired_difference(labels, ref, probs, n_bootstrap, seed)
        rows.append({"run": name, "vs": vs, "changed": changed_settings(real[vs], cfg), "n_rows": len(common),
                     "ref_log_loss": metrics.log_loss(labels, ref), "log_loss": metrics.log_loss(labels, probs),
                     "diff": diff, "diff_low": low, "diff_high": high})
    return pd.DataFrame(sorted(rows, key=lambda r: r["run"]))   # by name: a factor's nested variants together
