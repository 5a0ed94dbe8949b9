"""Load arena battles from any of the known layouts into one normalised DataFrame.

Normalised columns: ``id``, ``prompt``, ``response_a``, ``response_b`` (lists of str, one per
turn), ``model_a``, ``model_b`` (str, "" when absent), optional ``language`` and, when winners
are present, ``label`` (0 = A wins, 1 = B wins, 2 = tie). Row order and ids are kept as in the file:
integer-like ids become int64 only when that round-trips exactly (``007`` stays the string ``"007"``).
``df.attrs["load_report"].layout`` is ``"wsdm"`` when the labels came from a WSDM ``winner`` column (the
submission is then ``id,winner``), else ``"kaggle"``.

Documented fallbacks (counted in ``df.attrs["load_report"]``, never a dropped row):
- a text cell that is not a JSON list of strings (e.g. WSDM plain text) becomes one turn holding
  the raw text (``not_json``); a JSON scalar becomes one turn with its string form;
- ``null`` turns become "" (``null_turns``); NaN cells become one empty turn (``missing_cells``);
- lone UTF-16 surrogates are replaced by U+FFFD (``lone_surrogates``), so tokenizers never fail;
- prompt/response turn counts that differ are kept as they are (``turn_mismatch``); rendering pads;
- duplicate ids are kept (``duplicate_ids``) and reported.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
WINNER_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
LABEL_NAMES = ("A", "B", "tie")


@dataclass
class LoadReport:
    """Counts of every fallback applied while loading one file."""

    path: str
    rows: int = 0
    not_json: int = 0
    null_turns: int = 0
    missing_cells: int = 0
    lone_surrogates: int = 0
    empty_responses: int = 0
    turn_mismatch: int = 0
    duplicate_ids: int = 0
    layout: str = "kaggle"                 # "wsdm" when labels come from a ``winner`` column
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, kind: str, row: int, n: int = 1) -> None:
        """Count ``n`` occurrences of ``kind`` and remember the first few row numbers."""
        setattr(self, kind, getattr(self, kind) + n)
        rows = self.examples.setdefault(kind, [])
        if len(rows) < 5:
            rows.append(row)

    def summary(self) -> str:
        """One line listing the non-zero counts."""
        keys = ["not_json", "null_turns", "missing_cells", "lone_surrogates", "empty_responses",
                "turn_mismatch", "duplicate_ids"]
        parts = [f"{k}={getattr(self, k)}" for k in keys if getattr(self, k)]
        return f"{self.path}: {self.rows} rows" + (" (" + ", ".join(parts) + ")" if parts else "")


def _clean_surrogates(text: str) -> tuple[str, bool]:
    """Replace lone UTF-16 surrogates by U+FFFD; returns the text and whether any was found."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed, True


def parse_turns(cell: object, report: LoadReport | None = None, row: int = -1) -> list[str]:
    """Parse one JSON-encoded list of turns into a list of str, applying the documented fallbacks."""
    report = report or LoadReport(path="<cell>")
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        report.add("missing_cells", row)
        return [""]
    if isinstance(cell, (list, tuple, np.ndarray)):
        value: object = list(cell)
    else:
        text = str(cell)
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            report.add("not_json", row)
            value = [text]
    if not isinstance(value, list):
        report.add("not_json", row)
        value = [text if isinstance(value, str) else str(cell)]
    turns: list[str] = []
    for turn in value:
        if turn is None:
            report.add("null_turns", row)
            turn = ""
        elif not isinstance(turn, str):
            turn = json.dumps(turn, ensure_ascii=False) if isinstance(turn, (list, dict)) else str(turn)
        turn, had_surrogate = _clean_surrogates(turn)
        if had_surrogate:
            report.add("lone_surrogates", row)
        turns.append(turn)
    return turns


def _read_table(path: Path) -> pd.DataFrame:
    """Read csv / csv.gz / parquet / jsonl with every column as text, stripping a UTF-8 BOM."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return pd.read_json(path, lines=True, dtype=False)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    return df


def _labels(df: pd.DataFrame, path: Path, report: LoadReport) -> np.ndarray | None:
    """Label per row from the one-hot winner columns or a WSDM ``winner`` column (sets ``report.layout``)."""
    if all(c in df.columns for c in WINNER_COLUMNS):
        onehot = np.zeros((len(df), 3), dtype=np.int64)
        for j, col in enumerate(WINNER_COLUMNS):
            values = pd.to_numeric(df[col], errors="coerce")
            bad = values.isna() | ~values.isin([0, 1])
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(f"{path}: column '{col}' row {row} must be 0 or 1, got {df[col].iloc[row]!r}")
            onehot[:, j] = values.to_numpy(dtype=np.int64)
        not_onehot = onehot.sum(axis=1) != 1
        if not_onehot.any():
            row = int(np.flatnonzero(not_onehot)[0])
            raise ValueError(f"{path}: row {row} (id {df['id'].iloc[row]}) winner columns are not one-hot: "
                             f"{onehot[row].tolist()}")
        return onehot.argmax(axis=1)
    if "winner" in df.columns:
        report.layout = "wsdm"
        mapping = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
        labels = df["winner"].map(lambda w: mapping.get(str(w).strip().lower(), -1)).to_numpy()
        if (labels < 0).any():
            row = int(np.flatnonzero(labels < 0)[0])
            raise ValueError(f"{path}: column 'winner' row {row} must be model_a/model_b/tie, "
                             f"got {df['winner'].iloc[row]!r}")
        return labels.astype(np.int64)
    return None


def _ids(ids: pd.Series) -> np.ndarray:
    """int64 when every id is an integer whose text form round-trips, else the ids as text (missing: "")."""
    text = ids.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
    if len(text) and text.str.fullmatch(r"-?[1-9][0-9]{0,17}|0").all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def load_arena(path: str | Path) -> pd.DataFrame:
    """Read a Kaggle/HF/WSDM arena file into the normalised layout described in the module docstring."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"arena file not found: {path}")
    raw = _read_table(path)
    missing = [c for c in ("id", *TEXT_COLUMNS) if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing}; found {list(raw.columns)}")
    raw = raw.reset_index(drop=True)   # a parquet file may carry any index; rows are matched by position
    report = LoadReport(path=str(path), rows=len(raw))
    out = pd.DataFrame({"id": _ids(raw["id"])})
    for col in TEXT_COLUMNS:
        cells = raw[col].tolist()
        out[col] = pd.Series([parse_turns(c, report, i) for i, c in enumerate(cells)], dtype=object)
    for col in ("model_a", "model_b"):
        out[col] = raw[col].fillna("").astype(str).to_numpy() if col in raw.columns else ""
    if "language" in raw.columns:
        out["language"] = raw["language"].fillna("").astype(str).to_numpy()
    labels = _labels(raw, path, report)
    if labels is not None:
        out["label"] = labels
    for i, (p, a, b) in enumerate(zip(out["prompt"], out["response_a"], out["response_b"])):
        if not (len(p) == len(a) == len(b)):
            report.add("turn_mismatch", i)
        for side in (a, b):
            if not any(t.strip() for t in side):
                report.add("empty_responses", i)
    dup = out["id"].duplicated(keep=False).to_numpy()
    if dup.any():
        for i in np.flatnonzero(dup):
            report.add("duplicate_ids", int(i))
    out.attrs["load_report"] = report
    if report.summary() != f"{path}: {report.rows} rows":
        log.warning("load_arena fallbacks: %s", report.summary())
    return out


def content_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows' ids, texts and labels, in order: equal only for the same content, not just the same ids."""
    import hashlib

    cols = [c for c in ("id", *TEXT_COLUMNS, "label") if c in df.columns]
    h = hashlib.sha256(json.dumps(cols).encode())
    for row in df[cols].itertuples(index=False):
        h.update(json.dumps([v if isinstance(v, (list, str)) else str(v) for v in row], ensure_ascii=False,
                            default=str).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


def swap_ab(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with response A and B (texts, models, labels, any ``*_a``/``*_b`` column) swapped."""
    out = df.copy()
    for col in df.columns:
        if col.endswith("_a") and col[:-2] + "_b" in df.columns:
            twin = col[:-2] + "_b"
            out[col], out[twin] = df[twin].to_numpy(), df[col].to_numpy()
    if "label" in df.columns:
        out["label"] = np.array([1, 0, 2])[df["label"].to_numpy()]
    return out


def swap_probs(probs: np.ndarray) -> np.ndarray:
    """Swap the A and B columns of an (n, 3) or (n, 2) probability array."""
    probs = np.asarray(probs)
    order = [1, 0, 2] if probs.shape[1] == 3 else [1, 0]
    return probs[:, order]


def prob_frame(ids: object, probs: np.ndarray, **extra: object) -> pd.DataFrame:
    """``id`` (+ extra columns, in the order given) + the three winner probability columns."""
    out = pd.DataFrame({"id": np.asarray(ids)})
    for k, v in extra.items():
        out[k] = v
    for j, col in enumerate(WINNER_COLUMNS):
        out[col] = probs[:, j]
    return out


def rows_by_id(df: pd.DataFrame, ids: object) -> pd.DataFrame:
    """The rows of ``df`` whose ids (compared as text) are ``ids``, in that order (KeyError if one is missing)."""
    keyed = df.assign(_key=df["id"].astype(str)).set_index("_key")
    return keyed.loc[pd.Index(ids).astype(str)].reset_index(drop=True)


def prompt_groups(df: pd.DataFrame) -> np.ndarray:
    """Group key per row: the whole prompt text, so battles on the same prompt share a fold."""
    return pd.factorize(df["prompt"].map(lambda turns: "\x1f".join(turns)))[0]


def make_folds(df: pd.DataFrame, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """Fold number per row from StratifiedGroupKFold on the label, grouped by prompt; deterministic by seed."""
    from sklearn.model_selection import StratifiedGroupKFold

    if "label" not in df.columns:
        raise ValueError("make_folds needs a 'label' column (a train file with winner columns)")
    folds = np.full(len(df), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, valid_idx) in enumerate(splitter.split(np.zeros(len(df)), df["label"], prompt_groups(df))):
        folds[valid_idx] = k
    return folds

