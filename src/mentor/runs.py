"""Run directories (DESIGN.md §4): atomic writes, metrics and samples logs, checkpoints.

Layout of a run directory::

    config.yaml          the resolved config
    metrics.jsonl        one JSON object per step
    samples.jsonl        a few decoded samples per step
    ckpt/step_N/         model/ (HF dir), trainer.pt (optimizer, scheduler, RNG, data cursor, component state)
    final/               the final model as a normal Hugging Face directory

Every write is atomic: a temp file or directory in the same folder, then `os.replace`. A run killed
mid-write leaves at worst a `*.tmp*` leftover, never a half-written checkpoint that `--resume` would pick.
`metrics.jsonl` is truncated on resume to the checkpoint's step so that a resumed run's log equals an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        yield tmp
        _fsync_dir_tree(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class JsonlLog:
    """Append-only JSONL log, flushed per line."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")

    def truncate_to_step(self, step: int) -> None:
        """Keep only records with `step <= step` (used on resume)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))


def iter_jsonl_objects(path: str | os.PathLike, error: type[Exception] = ValueError) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (`"FILE:LINE"`, object) for every non-blank line of a JSONL file (`.gz` too). A line that is not a JSON
    object raises `error` naming the file and line — the one reader behind every user-facing JSONL input."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return str(x)


# ----------------------------------------------------------------------------- RNG and checkpoints

def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(run_dir: str | os.PathLike, step: int, model, tokenizer, trainer_state: dict[str, Any], keep: int = 2) -> Path:
    """Write `ckpt/step_N` atomically: the model as an HF directory plus `trainer.pt` (optimizer, scheduler,
    RNG, data cursor, selector/controller state). Older checkpoints beyond `keep` are removed."""
    from .models import _pin_tokenizer_class

    quiet_transformers()
    ckpt_root = Path(run_dir) / "ckpt"
    final = ckpt_root / f"step_{step}"
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        _pin_tokenizer_class(tmp / "model")
        torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "trainer.pt")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def quiet_transformers() -> None:
    """Silence transformers' per-save progress bars (mentor shows its own progress)."""
    try:
        from transformers.utils import logging

        logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first (temp leftovers of a killed write are ignored)."""
    root = Path(run_dir) / "ckpt"
    if not root.exists():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "trainer.pt").exists()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def remove_partial_checkpoints(run_dir: str | os.PathLike) -> list[str]:
    """Delete temp leftovers of checkpoint writes that were killed (called on resume); returns their names."""
    root = Path(run_dir) / "ckpt"
    gone = [p for p in root.glob(".step_*") if p.is_dir()] if root.exists() else []
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in gone]


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(ckpt / "trainer.pt", weights_only=False)
