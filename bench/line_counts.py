"""Size of the suite: lines of the notebooks' code cells and of kagglelib/*.py (the figures issue 13 tracks).

    python bench/line_counts.py
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Print code-cell lines per notebook and in total, then kagglelib's total lines."""
    total = 0
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        n = sum(len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code")
        total += n
        print(f"{nb.name:32s} {n:5d}")
    print(f"{'notebook code cells':32s} {total:5d}")
    lib = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (ROOT / "kagglelib").glob("*.py"))
    print(f"{'kagglelib/*.py':32s} {lib:5d}")


if __name__ == "__main__":
    main()
