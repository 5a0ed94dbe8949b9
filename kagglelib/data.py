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
# Probability targets in the normalised frame; the _a/_b names let swap_ab swap them with the texts.
TARGET_COLUMNS = ("target_a", "target_b", "target_tie")
SWAP_ORDER = (1, 0, 2)   # the A/B swap as a permutation of (A, B, tie): the one place it is written
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
    """(n, 3) target probabilities from the winner columns (one-hot or soft) or a WSDM ``winner`` column.

    Soft winner columns must each be in [0, 1] and sum to 1 within 1e-6 per row; sets ``report.layout``.
    """
    if all(c in df.columns for c in WINNER_COLUMNS):
        probs = np.zeros((len(df), 3), dtype=np.float64)
        for j, col in enumerate(WINNER_COLUMNS):
            values = pd.to_numeric(df[col], errors="coerce")
            bad = values.isna() | (values < 0) | (values > 1)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(f"{path}: column '{col}' row {row} must be 0 or 1 (or a probability in [0, 1]), "
                                 f"got {df[col].iloc[row]!r}")
            probs[:, j] = values.to_numpy(dtype=np.float64)
        bad_sum = np.abs(probs.sum(axis=1) - 1) > 1e-6
        if bad_sum.any():
            row = int(np.flatnonzero(bad_sum)[0])
            raise ValueError(f"{path}: row {row} (id {df['id'].iloc[row]}) winner columns are not one-hot nor "
                             f"probabilities summing to 1 (within 1e-6): {probs[row].tolist()}")
        return probs
    if "winner" in df.columns:
        report.layout = "wsdm"
        mapping = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}
        labels = df["winner"].map(lambda w: mapping.get(str(w).strip().lower(), -1)).to_numpy()
        if (labels < 0).any():
            row = int(np.flatnonzero(labels < 0)[0])
            raise ValueError(f"{path}: column 'winner' row {row} must be model_a/model_b/tie, "
                             f"got {df['winner'].iloc[row]!r}")
        return one_hot(labels.astype(np.int64))
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
    targets = _labels(raw, path, report)
    if targets is not None:
        add_targets(out, targets)
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

    # Soft targets join the hash only when present, so one-hot frames keep their fingerprints.
    cols = [c for c in ("id", *TEXT_COLUMNS, "label", *(TARGET_COLUMNS if is_soft(df) else ())) if c in df.columns]
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
        out["label"] = swap_labels(df["label"].to_numpy())
    return out


def swap_labels(labels: np.ndarray) -> np.ndarray:
    """Integer labels with A (0) and B (1) exchanged; tie (2) stays."""
    return np.asarray(SWAP_ORDER)[np.asarray(labels, dtype=np.int64)]


def swap_probs(probs: np.ndarray) -> np.ndarray:
    """Swap the A and B entries of probabilities / targets: (n, 3), (n, 2) or a single (3,) vector."""
    probs = np.asarray(probs)
    order = list(SWAP_ORDER) if probs.shape[-1] == 3 else [1, 0]
    return probs[..., order]


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


def one_hot(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """One-hot float matrix from integer labels."""
    return np.eye(n_classes)[np.asarray(labels, dtype=np.int64)]


def add_targets(df: pd.DataFrame, targets: np.ndarray) -> pd.DataFrame:
    """Set ``label`` (argmax; the first class on an exact tie) and the ``target_*`` probability columns in place."""
    targets = np.asarray(targets, dtype=np.float64)
    df["label"] = targets.argmax(axis=1).astype(np.int64)
    for col, values in zip(TARGET_COLUMNS, targets.T):
        df[col] = values
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    """(n, 3) probability targets: the ``target_*`` columns, else one-hot ``label``."""
    if all(c in df.columns for c in TARGET_COLUMNS):
        return df[list(TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return one_hot(df["label"].to_numpy())


def is_soft(df: pd.DataFrame) -> bool:
    """True when some row's targets are not one-hot (pseudo-labels, teacher files)."""
    if not all(c in df.columns for c in TARGET_COLUMNS) or not len(df):
        return False
    t = df[list(TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return bool(((t != 0) & (t != 1)).any())


def pair_keys(df: pd.DataFrame) -> np.ndarray:
    """Content hash per row of (prompt, {response_a, response_b}): equal for a battle and its A/B-swapped copy."""
    import hashlib

    def key(p: list[str], a: list[str], b: list[str]) -> str:
        sides = sorted(json.dumps(x, ensure_ascii=False) for x in (a, b))
        text = json.dumps([p, *sides], ensure_ascii=False)
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    return np.array([key(p, a, b) for p, a, b in zip(df["prompt"], df["response_a"], df["response_b"])], dtype=object)


def split_paths(paths: str | Path | list) -> list[str]:
    """A list of train files from a list or a comma-separated string ("a.csv,b.csv")."""
    if isinstance(paths, (list, tuple)):
        return [str(p) for p in paths]
    return [t.strip() for t in str(paths).split(",") if t.strip()]


def load_training(paths: str | Path | list) -> pd.DataFrame:
    """One labelled frame from one or several train files, de-duplicated across files (documented drop).

    A single file is exactly :func:`load_arena`. With several files, a row of a later file whose
    :func:`pair_keys` hash (A/B-swap aware) already appeared in an earlier file is dropped and counted;
    duplicates inside one file are kept (as with one file) and counted. ``source`` holds the file index;
    ``df.attrs["train_report"]`` has rows per file, duplicates dropped and ids. Ids must be unique across files.
    """
    files = split_paths(paths)
    if not files:
        raise ValueError("train_path is empty")
    frames = [load_arena(f) for f in files]
    for f, df in zip(files, frames):
        if "label" not in df.columns:
            raise ValueError(f"{f}: training needs winner columns (winner_model_a/b/tie or winner)")
    if len(frames) == 1:
        out = frames[0]
        out.attrs["train_report"] = {"files": [{"path": files[0], "rows": len(out), "kept": len(out),
                                                "duplicates_dropped": 0}], "rows": len(out), "duplicates_dropped": 0}
        return out
    seen: set[str] = set()
    kept, report = [], []
    for i, (f, df) in enumerate(zip(files, frames)):
        keys = pair_keys(df)
        new = np.array([k not in seen for k in keys], dtype=bool)
        seen.update(keys.tolist())
        part = df[new].assign(source=i)
        within = int(pd.Series(keys[new]).duplicated().sum())
        report.append({"path": f, "rows": len(df), "kept": int(new.sum()), "duplicates_dropped": int((~new).sum()),
                       "duplicates_within_file_kept": within, "soft_rows": _soft_rows(part)})
        if (~new).any():
            log.warning("%s: %d rows already in an earlier train file (A/B swap included) were dropped",
                        f, int((~new).sum()))
        kept.append(part)
    for col in TARGET_COLUMNS:   # files without soft targets: one-hot ones, so the columns are complete
        for part in kept:
            if col not in part.columns:
                part[col] = one_hot(part["label"].to_numpy())[:, TARGET_COLUMNS.index(col)]
    if len({str(p["id"].dtype) for p in kept}) > 1:
        for p in kept:   # int ids in one file, text in another: all as text, so ids compare one way
            p["id"] = p["id"].astype(str)
    out = pd.concat(kept, ignore_index=True)
    clash = out["id"].astype(str).duplicated(keep=False) & (out.groupby(out["id"].astype(str))["source"]
                                                            .transform("nunique") > 1)
    if clash.any():
        row = int(np.flatnonzero(clash.to_numpy())[0])
        raise ValueError(f"id {out['id'].iloc[row]!r} occurs in several train files "
                         f"({sorted(set(out.loc[clash.to_numpy(), 'source'].map(lambda k: files[k])))}); "
                         "give one file's ids a prefix")
    out.attrs["load_report"] = frames[0].attrs["load_report"]
    out.attrs["train_report"] = {"files": report, "rows": len(out),
                                 "duplicates_dropped": int(sum(r["duplicates_dropped"] for r in report))}
    return out


def _soft_rows(df: pd.DataFrame) -> int:
    """Rows whose targets are not one-hot."""
    if not all(c in df.columns for c in TARGET_COLUMNS):
        return 0
    t = df[list(TARGET_COLUMNS)].to_numpy(dtype=np.float64)
    return int(((t != 0) & (t != 1)).any(axis=1).sum())


def leakage_report(train: pd.DataFrame, folds: np.ndarray | None = None, test: pd.DataFrame | None = None) -> dict:
    """How many training rows share their prompt with the test file, and with another fold (should be 0)."""
    prompts = train["prompt"].map(lambda t: "\x1f".join(t))
    out: dict = {}
    if test is not None:
        test_prompts = set(test["prompt"].map(lambda t: "\x1f".join(t)))
        in_test = prompts.isin(test_prompts).to_numpy()
        out["train_rows_prompt_in_test"] = int(in_test.sum())
        if "source" in train.columns:
            by_file = pd.Series(in_test).groupby(train["source"].to_numpy()).sum()
            out["train_rows_prompt_in_test_by_file"] = {int(k): int(v) for k, v in by_file.items()}
    if folds is not None:
        n_folds_per_prompt = pd.Series(folds).groupby(prompts.to_numpy()).nunique()
        shared = prompts.map(n_folds_per_prompt).to_numpy() > 1
        out["train_rows_prompt_in_other_fold"] = int(shared.sum())
    return out
