"""Streaming readers and writers for lineage inputs: JSONL, Parquet, Hugging Face datasets.

A dataset is named on the command line as `[NAME=]PATH[@DATE]`:
- PATH: a `.jsonl` / `.json` (one object per line) file, a `.parquet` file, a directory of `.parquet` files, a
  directory written by `datasets.save_to_disk`, or `hf:ID[:SPLIT]` (loaded with `datasets.load_dataset`, streamed;
  needs the dataset in the local Hugging Face cache when offline).
- NAME: the dataset id used in reports (default: the file stem).
- DATE: the release date used by the lineage rule when rows carry none (`2024`, `2024-05`, `2024-05-17`).

Fields are mapped with `FieldMap` (dotted paths reach into nested columns, e.g. `reward_model.ground_truth`);
the prompt may be a string or a chat list. Rows are read in batches and never all at once.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

NO_DATE = np.iinfo(np.int64).max


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str
    date: int = NO_DATE  # ordinal day (datetime.date.toordinal), NO_DATE when unknown

    @staticmethod
    def parse(text: str) -> "DatasetSpec":
        name, rest = None, text
        head = text.split("=", 1)[0]
        if "=" in text and not text.startswith("hf:") and "/" not in head and head:
            name, rest = head, text.split("=", 1)[1]
        date = NO_DATE
        m = re.match(r"^(.*)@(\d{4}(?:-\d{2}(?:-\d{2})?)?)$", rest)
        if m:
            rest, date = m.group(1), parse_date(m.group(2), where=f"dataset spec {text!r}")
        if not rest:
            raise ValueError(f"dataset spec {text!r}: empty path (expected [NAME=]PATH[@DATE])")
        if name is None:
            name = rest[3:].split(":")[0] if rest.startswith("hf:") else Path(rest).name.split(".")[0]
        return DatasetSpec(name=name, path=rest, date=date)


@dataclass(frozen=True)
class FieldMap:
    """Which input field holds what. Each may be a dotted path; `None` = not present."""

    prompt: tuple[str, ...] = ("prompt", "problem", "question")  # first one present wins
    source: str | None = "source"  # atomic-source label (also tried: data_source)
    date: str | None = "date"
    id: str | None = "id"
    answer: str | None = "answer"

    def get(self, row: dict, path: str | None):
        if path is None:
            return None
        cur: Any = row
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur

    def prompt_of(self, row: dict, where: str):
        for p in self.prompt:
            v = self.get(row, p)
            if v is not None:
                return v
        raise ValueError(f"{where}: no prompt field (looked for {', '.join(self.prompt)}; set --prompt-field)")

    def source_of(self, row: dict):
        v = self.get(row, self.source)
        if v is None and self.source == "source":
            v = row.get("data_source")
        return v


def parse_date(value, where: str = "date") -> int:
    """'2024', '2024-05', '2024-05-17', an int year, or a date/datetime -> ordinal day; None/'' -> NO_DATE."""
    if value is None or value == "":
        return NO_DATE
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.toordinal() if isinstance(value, _dt.date) else value.date().toordinal()
    s = str(value).strip()
    m = re.match(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?", s)
    if not m:
        raise ValueError(f"{where}: cannot parse date {value!r} (expected YYYY, YYYY-MM or YYYY-MM-DD)")
    y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        return _dt.date(y, mo, d).toordinal()
    except ValueError as e:
        raise ValueError(f"{where}: bad date {value!r}: {e}") from None


def format_date(ordinal: int) -> str | None:
    return None if ordinal == NO_DATE else _dt.date.fromordinal(int(ordinal)).isoformat()


def iter_rows(path: str, batch_size: int = 8192) -> Iterator[dict]:
    """Yield rows of one dataset as dicts, streaming."""
    if path.startswith("hf:"):
        yield from _iter_hf(path[3:])
        return
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset {path}: no such file or directory")
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            from datasets import load_from_disk

            ds = load_from_disk(str(p))
            if hasattr(ds, "keys") and not hasattr(ds, "column_names"):
                raise ValueError(f"dataset {path}: a DatasetDict; name one split directory ({', '.join(ds.keys())})")
            yield from ds
            return
        files = sorted(p.glob("*.parquet")) or sorted(p.glob("*.jsonl"))
        if not files:
            raise ValueError(f"dataset {path}: directory holds no .parquet/.jsonl files and is not a saved HF dataset")
        for f in files:
            yield from iter_rows(str(f), batch_size)
        return
    suffix = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(str(p))
        for batch in pf.iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()
    elif suffix in (".jsonl", ".json", ".jsonl.gz"):
        from ..runs import iter_jsonl_objects

        yield from (row for _, row in iter_jsonl_objects(p))
    else:
        raise ValueError(f"dataset {path}: unknown format {p.suffix!r} (use .jsonl, .parquet, a directory or hf:ID)")


def _iter_hf(spec: str) -> Iterator[dict]:
    from datasets import load_dataset

    name, _, split = spec.partition(":")
    yield from load_dataset(name, split=split or "train", streaming=True)


def atomic_parquet(table, path: str | Path) -> None:
    """Write a pyarrow Table to `path` through a temp file in the same folder and one rename."""
    import os
    import tempfile

    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write rows atomically as JSONL or Parquet (by suffix)."""
    from ..runs import atomic_write_text

    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa

        atomic_parquet(pa.Table.from_pylist(rows), path)
    else:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def atomic_npy(path: str | Path, array: np.ndarray) -> None:
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", suffix=".npy", dir=path.parent)
    os.close(fd)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
