"""Refresh the README's results section from the runs (tables and two figures), so nothing is pasted by hand.

    python -m kagglelib.report [--output-dir outputs] [--readme README.md]

Reads ``<output_dir>/ablation/`` (written by notebook 06) and ``<output_dir>/runs/submission/metrics.json``
(notebook 05), writes the markdown between ``<!-- results:start -->`` and ``<!-- results:end -->`` and
copies the factor and bias figures to ``outputs/readme/`` (the one versioned folder under outputs/).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from .analysis.ablation import FACTOR_TABLE_CSV, INT_COLUMNS, integer_columns, to_markdown
from .analysis.probes import bias_frame
from .core.io import read_csv_table, write_text
from .core.paths import REPO_ROOT, default_output_dir
from .run.layout import ABLATION_DIR, ABLATION_FIGURES, ABLATION_TABLE_CSV, BIAS_REPORT
from .run.names import RunPaths


START, END = "<!-- results:start -->", "<!-- results:end -->"
TABLE_COLUMNS = ["run", "backbone", "task", "head_layers", "smoke", "n_train", "n_heldout", "log_loss", "ll_low",
                 "ll_high", "accuracy", "prior_log_loss", "seconds"]


def results_markdown(output_dir: Path, figure_dir: Path, readme_dir: Path = REPO_ROOT) -> str:
    """The results section: ablation table, submission blend, bias probes, with where each came from."""
    ab = output_dir / ABLATION_DIR
    table = integer_columns(read_csv_table(ab / ABLATION_TABLE_CSV, ("run",)), INT_COLUMNS + ("seconds",))
    parts = ["Produced by `bash run_all.sh` on the bundled 1,110-row sample (CPU, profile `cpu-sample`) and "
             "copied here by `python -m kagglelib.report`. Held-out rows only: out-of-fold over every fold for the "
             "baseline and the pairwise encoder (04), the validation fold for single-fold fine-tunes. Smoke runs are tiny random models that only prove the "
             "pipeline runs; they are not results. Intervals: 95% bootstrap over rows.\n",
             to_markdown(table[[c for c in TABLE_COLUMNS if c in table.columns]])]
    factors = ab / FACTOR_TABLE_CSV
    if factors.exists() and factors.stat().st_size > 1:
        parts += ["\n**Factor table** (notebook 06: the seeds' factors on the real MiniLM, every fold; each run "
                  "against the run it differs from in one setting (`vs`; other notebooks' runs against the reference) "
                  "on the rows both held out; `diff` = its log loss minus that run's, 95% paired bootstrap interval; "
                  "< 0 = better):\n", to_markdown(pd.read_csv(factors))]
        parts += _figure(ab, figure_dir, readme_dir, "factors", "Seed factors on the bundled sample")
    sub = RunPaths(output_dir / "runs" / "submission").metrics_file
    if sub.exists():
        m = json.loads(sub.read_text())
        blend = pd.DataFrame({run: m["valid_per_run"][run] for run in m["runs"]}).T
        blend["weight"] = pd.Series(m["weights"])
        blend.loc["blend + temperature + rules (cross-fitted)"] = pd.Series(m["valid_final_crossfit"])
        parts += [f"\n**Submission blend** (notebook 05, on the {m['n_valid_common']} validation rows all runs "
                  f"share; temperature {m['temperature']:.3f}, TTA {m['tta']}):\n",
                  to_markdown(blend.reset_index(names="run")[["run", "weight", "log_loss", "accuracy"]])]
    bias = ab / BIAS_REPORT
    if bias.exists():
        frame = bias_frame(json.loads(bias.read_text()))
        parts += ["\n**Bias probes** (notebook 06, real held-out rows; shifts are changes in the edited side's win "
                  "probability; `swap_exact`: the raw predictions are exactly swap-equivariant on these rows, "
                  "max_swap_diff 0, so the TTA row repeats the raw one):\n", to_markdown(frame)]
        parts += _figure(ab, figure_dir, readme_dir, "bias", "Bias probes on the bundled sample")
    return "\n".join(parts)


def _figure(ab: Path, figure_dir: Path, readme_dir: Path, name: str, caption: str) -> list[str]:
    """Copy one of 06's figures next to the README and return its markdown (nothing when 06 did not draw it)."""
    figure = ABLATION_FIGURES[name]
    if not (ab / figure).exists():
        return []
    figure_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ab / figure, figure_dir / figure)
    rel = Path(os.path.relpath(figure_dir / figure, readme_dir))
    return [f"\n![{caption}]({rel.as_posix()})\n"]


def update_readme(readme: Path, section: str) -> None:
    """Replace the text between the results markers (atomically)."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise ValueError(f"{readme}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(f"{head}{START}\n{section}\n{END}{tail}", readme)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output-dir", default=str(default_output_dir()))
    ap.add_argument("--readme", default=str(REPO_ROOT / "README.md"))
    args = ap.parse_args(argv)
    readme = Path(args.readme)
    update_readme(readme, results_markdown(Path(args.output_dir), REPO_ROOT / "outputs" / "readme", readme.parent))
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
