"""Pseudo-labels: score unlabelled battles with a run or a blend (swap TTA) into a soft-labelled train file.

The output is a Kaggle-layout table (``id, model_a, model_b, prompt, response_a, response_b`` as JSON lists,
and ``winner_model_a, winner_model_b, winner_tie`` as probabilities summing to 1) that ``train_path`` can
list next to the real train file, plus ``<file>.json`` with its provenance (runs, weights, time, input).
It is written as its name says (.csv, .csv.gz or .parquet; any other name is an error) and never over an input.
Scoring reuses :mod:`kagglelib.inference` (its predictors, chunks and TTA); nothing is trained here.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.io import comma_list, refuse_input, table_format, write_json, write_table
from ..data.frame import TARGET_COLUMNS, TEXT_COLUMNS, WINNER_COLUMNS, content_fingerprint
from ..data.load import _read_table, arena_from_table, load_arena
from ..run.folder import Run
from ..run.layout import find_run
from ..run.names import RunPaths
from ..scoring.calibration import apply_temperature
from ..scoring.ensemble import blend
from .predictors import run_predictors, visible_devices
from .tta import predict_chunked


def load_unlabelled(path: str | Path, id_prefix: str = "") -> pd.DataFrame:
    """Battles to score: a Kaggle test-layout file, or any file with prompt/response_a/response_b columns.

    A file without an ``id`` column gets ids ``<id_prefix>0, 1, ...`` by row (documented fallback); winner
    columns, if any, are ignored. ``id_prefix`` is also put before existing ids (to keep them apart from
    the train file's ids).
    """
    path = Path(path)
    raw = _read_table(path)   # noqa: SLF001 - the one reader of every layout
    if "id" not in raw.columns:
        attrs = dict(raw.attrs)
        raw = raw.drop(columns=[c for c in (*WINNER_COLUMNS, "winner") if c in raw.columns])
        raw.insert(0, "id", [f"{id_prefix or 'pseudo-'}{i}" for i in range(len(raw))])
        raw.attrs = attrs
        # Normalised from the table as read: parquet turns stay lists (never written out as text first).
        df = arena_from_table(raw, path)
    else:
        df = load_arena(path)
        if id_prefix:
            df["id"] = id_prefix + df["id"].astype(str)
    return df.drop(columns=["label", *TARGET_COLUMNS], errors="ignore")


def blend_members(runs: str | list[str], weights: str | list[float] | None,
                  output_dir: str | Path | None) -> tuple[list[Path], np.ndarray, float]:
    """Run folders, blend weights and temperature: named runs (equal weights unless given), or one 05 run."""

    names = comma_list(runs) if isinstance(runs, str) else list(runs)
    dirs = [find_run(r, output_dir) for r in names]
    temperature = 1.0
    if len(dirs) == 1 and Run.at(dirs[0]).config_class == "InferenceConfig":
        m = Run.at(dirs[0]).metrics   # a 05 submission: its fitted blend, for the members it was fitted on
        return blend_of_submission(dirs[0], m, output_dir), np.array(list(m["weights"].values()), dtype=np.float64), \
            float(m["temperature"])
    if weights in (None, "", []):
        w = np.full(len(dirs), 1 / len(dirs))
    else:
        w = np.array([float(x) for x in (comma_list(weights) if isinstance(weights, str) else weights)])
        if len(w) != len(dirs) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights {weights!r} must be {len(dirs)} non-negative numbers, not all 0")
        w = w / w.sum()
    return dirs, w, temperature


def blend_of_submission(submission: Path, m: dict[str, Any], output_dir: str | Path | None) -> list[Path]:
    """The member runs of a 05 blend, each checked to be the content the weights and temperature were fitted on.

    A member retrained since (same name, new manifest) is refused: its old weight and temperature would be applied
    to a new model without a word. Submissions saved before 05 recorded its members' identities are found by name.
    """
    members = m.get("members")
    if members is None:
        return [find_run(r, output_dir) for r in m["weights"]]
    dirs = []
    for member in members:
        recorded = Path(member["path"])
        run = find_run(recorded if RunPaths(recorded).is_run() else member["name"], output_dir)
        now = Run.at(run).identity
        if now != member["identity"]:
            raise ValueError(f"{submission}: its blend was fitted on run {member['run']!r} with manifest "
                             f"{member['identity'][:12]}, but {run} is now {now[:12]} (retrained or replaced since); "
                             "re-run 05 with the current runs, or pass the runs and weights yourself")
        dirs.append(run)
    return dirs


def pseudo_label(runs: str | list[str], input_path: str | Path, out_path: str | Path,
                 output_dir: str | Path | None = None, weights: str | list[float] | None = None,
                 tta: bool = True, id_prefix: str = "", devices: str = "auto",
                 chunk_rows: int = 256) -> dict[str, Any]:
    """Score ``input_path`` with the runs' blend (swap TTA) and write the soft-labelled train file + sidecar.

    ``out_path`` is checked before anything is scored: named .csv, .csv.gz or .parquet (written so), and not the
    input (nor a link to it).
    """
    check_out_path(out_path, [input_path])
    start = time.monotonic()
    df = load_unlabelled(input_path, id_prefix)
    dirs, w, temperature = blend_members(runs, weights, output_dir)
    probs = []
    for d in dirs:
        p, status = predict_chunked(run_predictors(d, visible_devices(devices)), df, None, chunk_rows, tta,
                                    progress=False)
        if not status["complete"]:
            raise RuntimeError(f"{d}: scoring stopped before every row was predicted")
        probs.append(p)
    final = blend(probs, w)
    if temperature != 1.0:
        final = apply_temperature(final, temperature)
    provenance = {
        "input": str(input_path), "input_fingerprint": content_fingerprint(df), "tta": tta,
        "id_prefix": id_prefix, "temperature": temperature, "seconds": round(time.monotonic() - start, 2),
        "runs": [{"run": r.name, "path": str(r.path), "kind": r.kind, "weight": float(wi), "identity": r.identity}
                 for r, wi in zip(map(Run.at, dirs), w)],
    }
    sidecar = write_soft_file(df, final, out_path, provenance, inputs=[input_path])
    return sidecar


def check_out_path(out_path: str | Path, inputs: list) -> None:
    """A pseudo-label file's name says its format, and neither it nor its ``.json`` sidecar is one of ``inputs``."""
    table_format(out_path, "pseudo-label out_path")
    refuse_input(out_path, inputs, "pseudo-label out_path")
    refuse_input(sidecar_path(out_path), inputs, "pseudo-label sidecar")


def sidecar_path(out_path: str | Path) -> Path:
    """``<file>.json`` beside the pseudo-label file."""
    return Path(out_path).with_name(Path(out_path).name + ".json")


def write_soft_file(df: pd.DataFrame, probs: np.ndarray, out_path: str | Path, provenance: dict[str, Any],
                    inputs: list | tuple = ()) -> dict:
    """Write battles + probabilities as a Kaggle-layout train file and ``<file>.json`` (provenance, time, rows).

    The file is written in the format its name says (.csv, .csv.gz, .parquet) and never over one of ``inputs``.
    """
    check_out_path(out_path, list(inputs))
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(df), 3) or not np.isfinite(probs).all():
        raise ValueError(f"pseudo-labels need finite (n, 3) probabilities for {len(df)} rows, got {probs.shape}")
    probs = probs / probs.sum(axis=1, keepdims=True)
    out = pd.DataFrame({"id": df["id"].to_numpy()})
    for col in ("model_a", "model_b"):
        out[col] = df[col].to_numpy() if col in df.columns else ""
    for col in TEXT_COLUMNS:
        out[col] = df[col].map(lambda turns: json.dumps(list(turns), ensure_ascii=False)).to_numpy()
    for j, col in enumerate(WINNER_COLUMNS):
        out[col] = probs[:, j]
    out_path = Path(out_path)
    write_table(out, out_path, inputs)
    sidecar = {"file": out_path.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": len(out),
               "mean_probs": probs.mean(axis=0).tolist(), **provenance}
    write_json(sidecar, sidecar_path(out_path))
    return sidecar
