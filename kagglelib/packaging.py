"""Prepare an offline Kaggle submission: a dataset (kagglelib + runs + wheels) and an inference kernel.

    python -m kagglelib.packaging --runs baseline,minilm --user YOUR_KAGGLE_NAME [--wheels peft,bitsandbytes]

writes ``outputs/kaggle/``:

- ``dataset/``: ``kagglelib/``, ``runs/<name>/`` for each run (config, metrics, predictions, model files;
  training checkpoints are left out), ``wheels/`` (downloaded here, installed offline there) and
  ``dataset-metadata.json``;
- ``kernel/``: ``05_tta_inference.ipynb`` with the runs and Kaggle profile filled in and one extra
  first cell that installs the bundled wheels with ``--no-index``, plus ``kernel-metadata.json``
  (competition + dataset + model sources, GPU on, internet off);
- ``COMMANDS.txt``: the ``kaggle`` CLI commands to upload both and submit.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .config import comma_list
from .io import write_json, write_text
from .paths import REPO_ROOT, default_output_dir, find_run

COMPETITION = "llm-classification-finetuning"
SKIP_IN_RUN = ("checkpoint-", "cache")   # training checkpoints and inference caches stay home


def copy_run(run_dir: Path, dest: Path) -> Path:
    """Copy a run folder without checkpoints or caches."""
    ignore = shutil.ignore_patterns(*(f"{p}*" for p in SKIP_IN_RUN))
    shutil.copytree(run_dir, dest / run_dir.name, ignore=ignore, dirs_exist_ok=True)
    return dest / run_dir.name


def download_wheels(packages: list[str], dest: Path, python_version: str = "3.11") -> list[str]:
    """``pip download`` manylinux wheels (no deps) for Kaggle's Python; returns the files."""
    dest.mkdir(parents=True, exist_ok=True)
    if packages:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", python_version, "--platform", "manylinux2014_x86_64",
                        "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_28_x86_64",
                        "-d", str(dest), *packages], check=True)
    return sorted(p.name for p in dest.glob("*.whl"))


def kernel_notebook(runs: list[str], dataset_slug: str, has_wheels: bool) -> dict:
    """The 05 notebook with Kaggle parameters and, if wheels are bundled, an offline install cell."""
    nb = json.loads((REPO_ROOT / "notebooks" / "05_tta_inference.ipynb").read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            src = src.replace('profile = "cpu-sample"', 'profile = "kaggle-t4"')
            lines = [f"runs = {json.dumps(runs)}  # runs bundled in the dataset" if line.startswith("runs =") else line
                     for line in src.splitlines()]
            cell["source"] = "\n".join(lines)
    if has_wheels:
        install = (f"# Offline install of the wheels bundled in the {dataset_slug} dataset (internet is off).\n"
                   f"!pip install -q --no-index --no-deps /kaggle/input/{dataset_slug}/wheels/*.whl")
        nb["cells"].insert(1, {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                               "source": install})
    return nb


def package(runs: list[str], user: str, out: Path, output_dir: Path, wheels: list[str],
            dataset_slug: str = "arena-pref-runs", kernel_slug: str = "arena-pref-inference",
            model_sources: list[str] | None = None, competition: str = COMPETITION) -> Path:
    """Build ``out/dataset``, ``out/kernel`` and ``out/COMMANDS.txt``; returns ``out``."""
    dataset, kernel = out / "dataset", out / "kernel"
    for d in (dataset, kernel):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "kagglelib", dataset / "kagglelib", ignore=shutil.ignore_patterns("__pycache__"))
    for run in runs:
        copy_run(find_run(run, output_dir), dataset / "runs")
    files = download_wheels(wheels, dataset / "wheels")
    write_json({"title": dataset_slug, "id": f"{user}/{dataset_slug}", "licenses": [{"name": "Apache 2.0"}]},
               dataset / "dataset-metadata.json")
    nb = kernel_notebook(runs, dataset_slug, bool(files))
    write_text(json.dumps(nb, indent=1, ensure_ascii=False), kernel / "05_tta_inference.ipynb")
    write_json({"id": f"{user}/{kernel_slug}", "title": kernel_slug, "code_file": "05_tta_inference.ipynb",
                "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
                "enable_internet": False, "dataset_sources": [f"{user}/{dataset_slug}"],
                "competition_sources": [competition], "kernel_sources": [],
                "model_sources": list(model_sources or [])}, kernel / "kernel-metadata.json")
    commands = [
        f"kaggle datasets create -p {dataset} --dir-mode zip      # first time; later: kaggle datasets version -p {dataset} -m 'new runs' --dir-mode zip",
        f"kaggle kernels push -p {kernel}",
        f"kaggle kernels status {user}/{kernel_slug}",
        "# then 'Submit' from the kernel page (code competition), or for a file you produced yourself:",
        f"kaggle competitions submit -c {competition} -f {output_dir}/submission.csv -m 'swap-TTA ensemble'",
    ]
    write_text("\n".join(commands) + "\n", out / "COMMANDS.txt")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="comma list of run names or folders")
    ap.add_argument("--user", required=True, help="your Kaggle user name")
    ap.add_argument("--output-dir", default=str(default_output_dir()), help="where the runs are")
    ap.add_argument("--out", default="", help="package folder (default <output-dir>/kaggle)")
    ap.add_argument("--wheels", default="", help="comma list of packages Kaggle lacks, e.g. bitsandbytes")
    ap.add_argument("--model-sources", default="", help="comma list of Kaggle model handles for LoRA bases")
    ap.add_argument("--competition", default=COMPETITION)
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.output_dir) / "kaggle"
    package(comma_list(args.runs), args.user, out, Path(args.output_dir), comma_list(args.wheels),
            model_sources=comma_list(args.model_sources), competition=args.competition)
    print((out / "COMMANDS.txt").read_text())


if __name__ == "__main__":
    main()
