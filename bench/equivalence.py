"""Before/after check of a refactoring: 02, a tiny 04 run and 05 on the bundled sample, every number compared.

    python bench/equivalence.py capture /tmp/eq/after          # runs the three on this checkout
    python bench/equivalence.py compare /tmp/eq/before /tmp/eq/after

``compare`` prints how many numbers of the runs' CSV files and metrics.json were compared and the largest
difference (timings, paths and creation times left out); a refactoring that changes no behaviour shows 0.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RUNS = ("baseline", "encoder", "submission")
# Keys whose values differ between two runs of the same code: timings, paths, creation times, run identities (the
# manifest hash covers config.json, which records its creation time).
VOLATILE = {"seconds", "created", "seconds_features", "seconds_embed", "identity", "peak_memory_mb", "fold_seconds_total",
            "run_dir", "submission", "resumed_from", "checkpoint", "status"}


def capture(out: Path) -> None:
    """Run 02 (LightGBM only), a 4-step MiniLM fine-tune and 05 blending both into ``out/outputs``."""
    import torch

    from kagglelib.inference.submit import InferenceConfig, run_inference
    from kagglelib.training.baseline import BaselineConfig, run_baseline
    from kagglelib.run.config import make_config
    from kagglelib.training.config import EncoderTrainConfig
    from kagglelib.training.fit import train

    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    od = str(out / "outputs")
    run_baseline(BaselineConfig(output_dir=od, compare=False))
    train(make_config(EncoderTrainConfig, output_dir=od, run_name="encoder", max_train_rows=64, max_valid_rows=48, max_steps=4,
                             eval_steps=2, save_steps=2, max_length=128, progress=False))
    run_inference(InferenceConfig(output_dir=od, runs=["baseline", "encoder"]))


def _numbers(x: object, y: object, where: str, diffs: list[tuple[float, str]], problems: list[str]) -> None:
    if isinstance(x, dict):
        for k, v in x.items():
            if k in VOLATILE or k.endswith("_seconds"):
                continue
            if not isinstance(y, dict) or k not in y:
                problems.append(f"{where}.{k} missing")
            else:
                _numbers(v, y[k], f"{where}.{k}", diffs, problems)
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            _numbers(u, v, f"{where}[{i}]", diffs, problems)
    elif isinstance(x, (int, float)) and not isinstance(x, bool) and isinstance(y, (int, float)):
        diffs.append((abs(float(x) - float(y)), where))
    elif x != y and not (isinstance(x, str) and "/" in x):   # paths differ between captures
        problems.append(f"{where}: {x!r} vs {y!r}")


def compare(a: Path, b: Path) -> float:
    """Largest absolute difference over every number of the two captures; prints the problems found."""
    diffs: list[tuple[float, str]] = []
    problems: list[str] = []
    for run in RUNS:
        ra, rb = a / "outputs" / "runs" / run, b / "outputs" / "runs" / run
        for f in sorted(ra.glob("*.csv")):
            x, y = pd.read_csv(f), pd.read_csv(rb / f.name)
            if set(x.columns) != set(y.columns) or len(x) != len(y):
                problems.append(f"{run}/{f.name}: columns or rows differ")
                continue
            if list(x.columns) != list(y.columns):   # the same columns in another order: compared by name
                print(f"   {run}/{f.name}: column order {list(x.columns)} -> {list(y.columns)}")
                y = y[list(x.columns)]
            num = x.select_dtypes("number").columns
            d = np.abs(x[num].to_numpy(float) - y[num].to_numpy(float))
            diffs += [(float(np.nanmax(d)) if d.size else 0.0, f"{run}/{f.name}")] * max(int(d.size), 1)
            if "id" in x.columns and not (x["id"].astype(str) == y["id"].astype(str)).all():
                problems.append(f"{run}/{f.name}: ids differ")
        _numbers(json.loads((ra / "metrics.json").read_text()), json.loads((rb / "metrics.json").read_text()),
                 f"{run}/metrics", diffs, problems)
    worst = max(diffs) if diffs else (0.0, "")
    print(f"compared {len(diffs)} numbers; largest |difference| {worst[0]:.3g} ({worst[1]}); problems: {len(problems)}")
    for p in problems[:30]:
        print("  ", p)
    return worst[0] if not problems else float("inf")


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(Path(sys.argv[2]))
    else:
        raise SystemExit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) <= 1e-9 else 1)
