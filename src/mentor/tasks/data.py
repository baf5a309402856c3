"""Dataset rows -> `Prompt`s: JSONL, Parquet, a saved Hugging Face dataset, or a hub id; and prompt rendering.

`load_rows(path, split, fields, verifier, limit, answer_extract)` reads

- ``*.jsonl`` (one JSON object per line; blank lines skipped; errors name the line, 1-based),
- ``*.parquet`` (errors name the row, 0-based),
- a directory written by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` is indexed by `split`),
- any other directory, or a hub id, through ``datasets.load_dataset(path, split=split)``; ``"openai/gsm8k:main"``
  selects a configuration (the part after the last ":", used only when no such local path exists).

Columns are mapped by a `FieldMap` (`mentor.config.FieldMap`; defaults are the column names themselves):

| Prompt field | column (`FieldMap`) | rule |
|---|---|---|
| text / messages | `prompt`, else `messages` | a string prompt is `text`; a list of ``{"role", "content"}`` dicts (in either column, as in TRL's conversational format) is `messages` |
| answer | `answer` | string, or a number (``18.0`` becomes ``"18"``); lists / dicts (code tests) are JSON-encoded. Required unless the row has a `completion` |
| verifier | `verifier` | optional; else the `verifier` argument; must be a name in `mentor.verifiers.VERIFIERS` |
| source / domain | `source` / `domain` | optional strings; source defaults to the file name (or hub id) |
| id | `id` | optional string or integer; default ``"{name}-{row}"``; duplicates are an error |
| meta["completion"] | `completion` | optional SFT target |

Other Prompt fields: `row` = 0-based row index; `difficulty` from an integer ``difficulty`` column if present; meta
holds ``path``, ``line`` (JSONL) and, when extraction changed the answer, the full reference ``solution``.

Answer extraction (`answer_extract`): ``"auto"`` (default) takes the text after the last ``####`` when present
(GSM8K's native format, thousands separators removed), else the content of the last ``\\boxed{}`` when present, else
the answer unchanged; ``"gsm8k"`` and ``"boxed"`` demand their marker (a row without it is an error); ``"none"``
keeps the answer as is. GSM8K's native rows load with::

    load_rows("gsm8k.jsonl", fields=FieldMap(prompt="question"), verifier="math")

Errors are `DataError` (a ValueError) naming the file, the line or row, and the field.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

from ..config import FieldMap
from ..types import Prompt

ANSWER_EXTRACT = ("auto", "gsm8k", "boxed", "none")


class DataError(ValueError):
    """A malformed dataset row or file; the message names the file, the line (or row) and the field."""


def gsm8k_fixture_path() -> Path:
    """The small hand-written GSM8K-style fixture shipped with mentor (tests, examples)."""
    return Path(str(resources.files("mentor") / "data" / "gsm8k_fixture.jsonl"))


# ----------------------------------------------------------------------------- readers

def _iter_jsonl(path: Path) -> Iterator[tuple[str, int | None, dict]]:
    from ..runs import iter_jsonl_objects

    for where, row in iter_jsonl_objects(path, DataError):
        yield where, int(where.rsplit(":", 1)[1]), row


def _iter_parquet(path: Path) -> Iterator[tuple[str, int | None, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read as Parquet: {e}") from None
    i = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield f"{path}, row {i}", None, row
            i += 1


def _iter_hf(path: str, split: str) -> Iterator[tuple[str, int | None, dict]]:
    import datasets

    p = Path(path)
    if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"{path}: no split {split!r}; available: {sorted(ds)}")
            ds = ds[split]
    else:
        name, config = path, None
        if not p.exists() and ":" in path:
            name, config = path.rsplit(":", 1)
        ds = datasets.load_dataset(name, config, split=split)
    for i, row in enumerate(ds):
        yield f"{path} [{split}], row {i}", None, row


def _iter_rows(path: str, split: str) -> Iterator[tuple[str, int | None, dict]]:
    """(where, JSONL line number or None, row) for every row; `where` prefixes error messages."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".jsonl":
            return _iter_jsonl(p)
        if p.suffix == ".parquet":
            return _iter_parquet(p)
        raise DataError(f"{path}: unsupported file type {p.suffix!r}; expected .jsonl, .parquet or a dataset directory")
    if not p.exists() and (path.endswith((".jsonl", ".parquet")) or path.startswith((".", "/"))):
        raise DataError(f"{path}: no such file")
    return _iter_hf(path, split)


# ----------------------------------------------------------------------------- rows -> prompts

def _messages(value: list, where: str, column: str) -> tuple[dict[str, str], ...]:
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict):
            raise DataError(f"{where}, field '{column}[{j}]': expected a {{'role', 'content'}} object, got {m!r}")
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                raise DataError(f"{where}, field '{column}[{j}].{key}': expected a string, got {m.get(key)!r}")
        out.append({"role": m["role"], "content": m["content"]})
    if not out:
        raise DataError(f"{where}, field '{column}': empty message list")
    return tuple(out)


def _extract_answer(answer: str, mode: str, where: str, column: str) -> str:
    from ..verifiers.exact import last_boxed

    if mode == "none":
        return answer
    if "####" in answer and mode in ("auto", "gsm8k"):
        return answer.rsplit("####", 1)[1].strip().replace(",", "")
    if mode == "gsm8k":
        raise DataError(f"{where}, field '{column}': no '#### <answer>' marker (answer_extract='gsm8k')")
    boxed = last_boxed(answer)
    if boxed is not None and mode in ("auto", "boxed"):
        return boxed.strip()
    if mode == "boxed":
        raise DataError(f"{where}, field '{column}': no \\boxed{{...}} (answer_extract='boxed')")
    return answer


def _optional_str(row: dict, column: str, where: str) -> str | None:
    value = row.get(column)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}, field '{column}': expected a string, got {type(value).__name__} {value!r}")
    return value


def row_to_prompt(row: dict[str, Any], where: str, index: int, name: str, fields: FieldMap, verifier: str,
                  answer_extract: str = "auto") -> Prompt:
    """One dataset row as a Prompt (rules in the module docstring); `where` prefixes error messages."""
    from ..verifiers import VERIFIERS

    text, messages = None, None
    column = fields.prompt if row.get(fields.prompt) is not None else fields.messages
    value = row.get(column)
    if value is None:
        raise DataError(f"{where}, field '{fields.prompt}': missing (and no '{fields.messages}' column either)")
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        messages = _messages(value, where, column)
    else:
        raise DataError(f"{where}, field '{column}': expected a string or a list of messages, got {type(value).__name__}")

    completion = _optional_str(row, fields.completion, where)
    raw = row.get(fields.answer)
    meta: dict[str, Any] = {}
    if raw is None:
        if completion is None:
            raise DataError(f"{where}, field '{fields.answer}': missing")
        answer = None
    elif isinstance(raw, str):
        answer = _extract_answer(raw, answer_extract, where, fields.answer)
        if answer != raw:
            meta["solution"] = raw
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        answer = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    elif isinstance(raw, (list, dict)):
        answer = json.dumps(raw)  # e.g. the tests of a code task
    else:
        raise DataError(f"{where}, field '{fields.answer}': expected a string or a number, got {type(raw).__name__} {raw!r}")

    row_verifier = _optional_str(row, fields.verifier, where) or verifier
    if row_verifier not in VERIFIERS:
        raise DataError(f"{where}, field '{fields.verifier}': unknown verifier {row_verifier!r}; "
                        f"choose one of {sorted(VERIFIERS)}")
    rid = row.get(fields.id)
    if rid is None:
        rid = f"{name}-{index}"
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise DataError(f"{where}, field '{fields.id}': expected a string or an integer, got {rid!r}")
    difficulty = row.get("difficulty")
    if difficulty is not None and (isinstance(difficulty, bool) or not isinstance(difficulty, int)):
        raise DataError(f"{where}, field 'difficulty': expected an integer, got {difficulty!r}")
    if completion is not None:
        meta["completion"] = completion
    return Prompt(
        id=str(rid), text=text, messages=messages, answer=answer, verifier=row_verifier,
        source=_optional_str(row, fields.source, where) or name, domain=_optional_str(row, fields.domain, where) or "",
        difficulty=difficulty, row=index, meta=meta,
    )


def load_rows(path: str, split: str = "train", fields: FieldMap | None = None, verifier: str = "exact",
              limit: int | None = None, answer_extract: str = "auto") -> list[Prompt]:
    """Prompts from a JSONL / Parquet file, a saved dataset directory or a hub id (module docstring)."""
    from ..verifiers import VERIFIERS

    fields = fields or FieldMap()
    if verifier not in VERIFIERS:
        raise DataError(f"{path}: unknown verifier {verifier!r}; choose one of {sorted(VERIFIERS)}")
    if answer_extract not in ANSWER_EXTRACT:
        raise DataError(f"{path}: answer_extract {answer_extract!r}; choose one of {list(ANSWER_EXTRACT)}")
    if limit is not None and limit < 0:
        raise DataError(f"{path}: limit must be >= 0, got {limit}")
    name = Path(path).stem if Path(path).exists() else str(path)
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for index, (where, lineno, row) in enumerate(_iter_rows(str(path), split)):
        if limit is not None and index >= limit:
            break
        prompt = row_to_prompt(row, where, index, name, fields, verifier, answer_extract)
        if prompt.id in seen:
            raise DataError(f"{where}, field '{fields.id}': duplicate id {prompt.id!r} (first at {seen[prompt.id]})")
        seen[prompt.id] = where
        if lineno is not None:
            prompt.meta["line"] = lineno
        prompt.meta["path"] = str(path)
        prompts.append(prompt)
    return prompts


def render_prompt(tokenizer, prompt: Prompt, template: str = "{prompt}") -> str:
    """The text fed to the model: a plain prompt with "{prompt}" in `template` replaced by its text (other braces
    are kept literally, so LaTeX in a template is safe); a chat through the tokenizer's chat template with the
    generation prompt added (the template does not apply to chats)."""
    if prompt.messages is not None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(f"prompt {prompt.id!r} is a chat but the tokenizer has no chat template")
        return tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
    if "{prompt}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{prompt}}' placeholder")
    return template.replace("{prompt}", prompt.text)
