"""Every bad input file tried against ``load_arena`` / ``make_folds``, as a table driving one parametrized test.

Each case is (name, how the file is made, expected outcome). "ok: ..." cases must load with every row kept in
order (and the check below the builder); "error: <regex>" cases must raise a ``ValueError`` from kagglelib whose
message names the file and matches the regex (line/column where there is one). ``python tests/test_bad_inputs.py``
prints the table with each case's outcome on the code it imports (used for the before/after table in the issue).
"""
from __future__ import annotations

import gzip
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

HEADER = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b",
          "winner_tie"]


def rows(n: int = 6, over: dict[int, dict] | None = None) -> list[dict]:
    """n valid Kaggle train rows (labels cycling A, B, tie; distinct prompts), row i overridden by over[i]."""
    out = []
    for i in range(n):
        lab = i % 3
        r = {"id": str(100 + i), "model_a": "m1", "model_b": "m2", "prompt": json.dumps([f"Question {i}, please"]),
             "response_a": json.dumps([f"Answer A{i}; with \"quotes\""]), "response_b": json.dumps([f"Answer B{i}"]),
             "winner_model_a": str(int(lab == 0)), "winner_model_b": str(int(lab == 1)), "winner_tie": str(int(lab == 2))}
        r.update((over or {}).get(i, {}))
        out.append(r)
    return out


def csv_text(data: list[dict], sep: str = ",", line_end: str = "\n", columns: list[str] | None = None) -> str:
    buf = io.StringIO()
    pd.DataFrame(data, columns=columns or HEADER).to_csv(buf, index=False, sep=sep, lineterminator=line_end)
    return buf.getvalue()


def write(name: str, data: bytes | str) -> Callable[[Path], Path]:
    """A builder writing ``data`` (str: UTF-8) to ``tmp/name``."""
    def build(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path
    return build


def parquet(name: str, df: pd.DataFrame) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        df.to_parquet(tmp / name)
        return tmp / name
    return build


def folder(tmp: Path) -> Path:
    (tmp / "train.csv").mkdir()
    return tmp / "train.csv"


def xlsx_like(tmp: Path) -> Path:
    import zipfile
    with zipfile.ZipFile(tmp / "train.csv", "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return tmp / "train.csv"


WSDM = pd.DataFrame({"id": ["w1", "w2", "w3"], "prompt": ['["apple", "banana"]', "[]", "Was ist 2+2?"],
                     "response_a": ["Fruit list", "[1, 2]", "4"], "response_b": ["ok", "empty", "vier"],
                     "winner": ["model_a", "model_b", "model_a"], "language": ["English", "English", "German"]})
LOOKS_JSON = rows(6, {i: {"prompt": f"Plain question {i}"} for i in range(6)})
LOOKS_JSON[2]["prompt"] = '["apple", "banana"]'
CP1252 = csv_text(rows(3, {1: {"response_a": json.dumps(["café — naïve"], ensure_ascii=False)}}))
GOOD = csv_text(rows())


@dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    expect: str                               # "ok: what" or "error: regex matched against the message"
    check: Callable[[pd.DataFrame], bool] | None = None
    action: str = "load"                      # load | folds (make_folds(n_splits=5) after loading)
    kwargs: dict = field(default_factory=dict)


CASES = [
    Case("UTF-8 without BOM", write("t.csv", GOOD), "ok: 6 rows", lambda d: len(d) == 6),
    Case("UTF-8 with BOM", write("t.csv", "\ufeff" + GOOD), "ok: id column found", lambda d: d["id"].iloc[0] == 100),
    Case("UTF-16 LE with BOM (Excel 'Unicode text')", write("t.csv", GOOD.encode("utf-16")), "ok: decoded by BOM",
         lambda d: len(d) == 6 and d.attrs["load_report"].encoding == "utf-16"),
    Case("UTF-16 BE with BOM", write("t.csv", b"\xfe\xff" + GOOD.encode("utf-16-be")), "ok: decoded by BOM",
         lambda d: len(d) == 6),
    Case("UTF-16 without BOM", write("t.csv", GOOD.encode("utf-16-le")), "error: UTF-16 text without a byte-order mark"),
    Case("cp1252 (Excel 'CSV', Windows)", write("t.csv", CP1252.encode("cp1252")),
         "error: line 3 is not valid UTF-8.*cp1252.*iconv"),
    Case("cp1252 with encoding='cp1252' given", write("t.csv", CP1252.encode("cp1252")), "ok: explicit encoding",
         lambda d: d["response_a"].iloc[1] == ["café — naïve"], kwargs={"encoding": "cp1252"}),
    Case("tab-separated", write("t.tsv", csv_text(rows(), sep="\t")), "ok: separator from the header",
         lambda d: len(d) == 6 and d.attrs["load_report"].separator == "\t"),
    Case("semicolon-separated (Excel, European locale)", write("t.csv", csv_text(rows(), sep=";")),
         "ok: separator from the header", lambda d: len(d) == 6 and d.attrs["load_report"].separator == ";"),
    Case("tab-separated with other column names", write("t.tsv", csv_text(rows(), sep="\t").replace("prompt", "q", 1)),
         "error: line 1: the header is not comma-separated \\(it has tabs\\)"),
    Case("stray quote: unclosed quote", write("t.csv", GOOD.replace('"[""Answer B3""]"', '"[""Answer B3""]', 1)),
         "error: line \\d+: .*expected 9 fields|line \\d+: .*stray quote"),
    Case("stray quote after a closing quote", write("t.csv", GOOD.replace('"[""Answer B2""]"', '"[""Answer B2""]"x', 1)),
         "error: line 4: .*stray quote"),
    Case("unquoted comma in the first data row (extra field)", write("t.csv", GOOD.replace(",m1,", ",m1,extra,", 1)),
         "error: line 2: expected 9 fields .* found 10"),
    Case("unquoted comma in a later row", write("t.csv", GOOD.replace("104,m1,", "104,m1,x,", 1)),
         "error: line 6: expected 9 fields .* found 10"),
    Case("short row (fields missing)", write("t.csv", GOOD.replace(",0,1,0\n", ",0\n", 1)),
         "error: line 3: expected 9 fields .* found 7"),
    Case("line break outside quotes splits a row", write("t.csv", GOOD.replace(",m1,m2,", ",m1\nm2,", 1)),
         "error: line 2: expected 9 fields"),
    Case("CRLF line endings", write("t.csv", csv_text(rows(), line_end="\r\n")), "ok: 6 rows, no \\r in texts",
         lambda d: len(d) == 6 and not any("\r" in t for t in d["prompt"].map("".join))),
    Case("old-Mac CR-only line endings", write("t.csv", csv_text(rows(), line_end="\r")), "ok: 6 rows",
         lambda d: len(d) == 6),
    Case("NUL bytes inside a text", write("t.csv", GOOD.replace("Answer A1", "Answer\x00A1", 1)),
         "ok: kept as a character (JSON read with strict=False)", lambda d: d["response_a"].iloc[1][0].startswith("Answer\x00A1")),
    Case("trailing empty lines", write("t.csv", GOOD + "\n\n\n"), "ok: 6 rows", lambda d: len(d) == 6),
    Case("a line of only commas", write("t.csv", GOOD + ",,,,,,,,\n"), "error: line 8: column 'id' is blank"),
    Case("blank id", write("t.csv", GOOD.replace("\n102,", "\n,", 1)), "error: line 4: column 'id' is blank"),
    Case("id in Excel scientific notation", write("t.csv", GOOD.replace("\n103,", "\n1.03457E+11,", 1)),
         "error: line 5: column 'id' is '1.03457E\\+11'.*scientific"),
    Case("zero-padded ids", write("t.csv", GOOD.replace("\n10", "\n0010")), "ok: ids kept as text",
         lambda d: d["id"].tolist()[:2] == ["00100", "00101"]),
    Case("duplicate column names", write("t.csv", GOOD.replace("model_b", "model_a", 1)),
         "error: duplicate column name.*model_a"),
    Case("header only (test file)", write("t.csv", GOOD.split("\n")[0] + "\n"), "error: header but no rows.*allow_empty"),
    Case("header only, allow_empty=True", write("t.csv", GOOD.split("\n")[0] + "\n"), "ok: 0 rows",
         lambda d: len(d) == 0, kwargs={"allow_empty": True}),
    Case("empty file (0 bytes)", write("t.csv", b""), "error: empty"),
    Case("CSV named .parquet", write("t.parquet", GOOD), "error: named .parquet but it is text"),
    Case("parquet named .csv", parquet("t.csv", pd.read_csv(io.StringIO(GOOD), dtype=str)),
         "error: this is a parquet file; name it"),
    Case(".csv.gz that is not gzip", write("t.csv.gz", GOOD), "error: named .gz but it is text"),
    Case("truncated .csv.gz (interrupted download)", write("t.csv.gz", gzip.compress(GOOD.encode())[:120]),
         "error: damaged gzip file"),
    Case("truncated parquet", lambda tmp: write("t.parquet", parquet("full.parquet", pd.read_csv(
        io.StringIO(GOOD), dtype=str))(tmp).read_bytes()[:200])(tmp), "error: not a readable parquet file"),
    Case("gzip named .csv", write("t.csv", gzip.compress(GOOD.encode())), "error: gzip-compressed; rename"),
    Case("Excel workbook saved as .csv", xlsx_like, "error: zip file .*Excel.*CSV UTF-8"),
    Case("a folder passed as the file", folder, "error: is a folder"),
    Case("broken JSON lines", write("t.jsonl", '{"id": 1, "prompt": "x"}\n{"id": 2,\n'), "error: not valid JSON lines"),
    Case("WSDM parquet: plain text that looks like JSON", parquet("w.parquet", WSDM), "ok: never JSON-parsed",
         lambda d: d["prompt"].tolist()[:2] == [['["apple", "banana"]'], ["[]"]] and d["response_a"].iloc[1] == ["[1, 2]"]),
    Case("Kaggle CSV with a plain-text prompt column, one cell looks like JSON", write("t.csv", csv_text(LOOKS_JSON)),
         "ok: column read as plain text", lambda d: d["prompt"].iloc[2] == ['["apple", "banana"]']),
    Case("one damaged JSON cell in a JSON column", write("t.csv", GOOD.replace('"[""Answer B4""]"', '"[""Answer B4"', 1)),
         "ok: that cell is one raw turn (not_json=1)", lambda d: d.attrs["load_report"].not_json == 1),
    Case("missing required column", write("t.csv", GOOD.replace("response_b", "resp_b", 1)),
         "error: missing required column.*response_b"),
    Case("labels written by Excel as 1.0/0.0", write("t.csv", GOOD.replace(",1,0,0\n", ",1.0,0.0,0.0\n")),
         "ok: parsed", lambda d: d["label"].iloc[0] == 0),
    Case("train too small for 5 folds", write("t.csv", csv_text(rows(3))),
         "error: 3 rows with 3 distinct prompts cannot make 5 folds", action="folds"),
    Case("train with a single class", write("t.csv", csv_text(rows(12, {i: {"winner_model_a": "1", "winner_model_b": "0",
                                                                             "winner_tie": "0"} for i in range(12)}))),
         "error: same label.*\\[12, 0, 0\\]", action="folds"),
    Case("train with no ties", write("t.csv", csv_text(rows(4, {2: {"winner_model_a": "1", "winner_tie": "0"}}))),
         "ok: warning 'no ties'", lambda d: any("no ties" in w for w in d.attrs["load_report"].warnings)),
]


def run_case(case: Case, tmp: Path) -> pd.DataFrame:
    from kagglelib.data.folds import make_folds
    from kagglelib.data.load import load_arena

    df = load_arena(case.build(tmp), **case.kwargs)
    if case.action == "folds":
        make_folds(df, n_splits=5)
    return df


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_table(case: Case, tmp_path: Path):
    if case.expect.startswith("error:"):
        with pytest.raises(ValueError) as err:
            run_case(case, tmp_path)
        message = str(err.value)
        assert re.search(case.expect[len("error:"):].strip(), message), message
        assert "t." in message or "w." in message or "train.csv" in message, f"file not named: {message}"
    else:
        df = run_case(case, tmp_path)
        assert case.check is None or case.check(df), case.name


def test_rows_never_dropped_or_reordered_by_the_reader(tmp_path):
    """Odd-but-valid files (CRLF, BOM, tabs, NULs, trailing lines, UTF-16) give the same ids in the same order."""
    from kagglelib.data.load import load_arena

    want = [r["id"] for r in rows(6)]
    variants = {"crlf.csv": csv_text(rows(), line_end="\r\n"), "bom.csv": "\ufeff" + GOOD,
                "tab.tsv": csv_text(rows(), sep="\t"), "trail.csv": GOOD + "\n\n", "u16.csv": GOOD.encode("utf-16")}
    for name, data in variants.items():
        df = load_arena(write(name, data)(tmp_path))
        assert df["id"].astype(str).tolist() == want, name
        assert df["response_a"].tolist() == [json.loads(r["response_a"]) for r in rows(6)], name


def outcome(case: Case, tmp: Path) -> str:
    """One line: what the code imported here does with the case."""
    try:
        df = run_case(case, tmp)
    except Exception as err:   # noqa: BLE001 - the table records whatever happens
        text = str(err).replace("\n", " ")
        return f"{type(err).__name__}: {text[:110]}"
    try:
        ok = case.check(df) if case.check else True
    except Exception:   # noqa: BLE001 - e.g. a report field older code lacks
        ok = False
    return f"loaded {len(df)} rows" + ("" if ok else " (check fails: wrong or unreported)")


if __name__ == "__main__":
    import sys
    import tempfile

    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            print(json.dumps({"case": case.name, "expect": case.expect, "got": outcome(case, Path(d))}))
    sys.exit(0)
