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
#   OUTPUT_DIR              where runs and executed notebooks go (default: outputs)
#   PROFILE                 cpu-sample (default) | kaggle-t4 | colab-a100
#   NOTEBOOKS               which notebooks, by number (default: all, e.g. NOTEBOOKS="01 02")
#   ABLATION_GRID=1         06 first trains the seeds' ablation grid (03's trainer, each factor toggled)
#   VENV                    virtual environment folder on a local machine (default: .venv)
#   USE_SYSTEM_PYTHON=1     use the current python3 and its packages (automatic on Kaggle and Colab)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"

OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/outputs}"
PROFILE="${PROFILE:-cpu-sample}"
VENV="${VENV:-$ROOT/.venv}"

# pip, minus the "location is ignored" noise some mirrors configure.
pip_install() { "$PY" -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

on_hosted_notebook() { [ -d /kaggle/input ] || [ -n "${COLAB_RELEASE_TAG:-}" ] || [ -n "${KAGGLE_KERNEL_RUN_TYPE:-}" ]; }

setup() {
  if [ "${USE_SYSTEM_PYTHON:-0}" = 1 ] || on_hosted_notebook; then
    PY="$(command -v python3)"
    # Kaggle and Colab ship torch/transformers; install only what is missing (never touches their torch).
    if ! "$PY" -c "import papermill, peft, transformers, accelerate, lightgbm, sklearn, matplotlib" 2>/dev/null; then
      pip_install -r requirements.txt
    fi
  else
    if [ ! -x "$VENV/bin/python" ]; then
      echo "[run_all] creating virtual environment $VENV"
      python3 -m venv "$VENV"
    fi
    PY="$VENV/bin/python"
    # A CPU-only machine gets the CPU wheel; pulling plain 'torch' would download GBs of CUDA packages.
    if ! "$PY" -c "import torch" 2>/dev/null; then
      echo "[run_all] installing torch==2.13.0 (CPU)"
      pip_install torch==2.13.0
    fi
    if [ ! -f "$VENV/.requirements-installed" ] || [ requirements.txt -nt "$VENV/.requirements-installed" ]; then
      echo "[run_all] installing requirements.txt"
      pip_install -r requirements.txt
      touch "$VENV/.requirements-installed"
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
  setup) echo "[run_all] environment ready: $PY" ;;
  test) shift; MPLBACKEND="${MPLBACKEND:-Agg}" "$PY" -m pytest -q "$@" tests ;;
  test-fast) shift; MPLBACKEND="${MPLBACKEND:-Agg}" "$PY" -m pytest -q -m "not slow and not notebooks and not ddp" "$@" tests ;;
  run) run_notebooks ;;
  *) echo "usage: bash run_all.sh [run|test|test-fast|setup]" >&2; exit 2 ;;
esac
