"""A rich progress bar with the step's key metrics live beside it (quiet when not a terminal or disabled)."""

from __future__ import annotations

import sys
from typing import Any

# Metrics shown beside the bar, in this order, when the step reports them.
SHOWN = ("loss", "reward/mean", "accuracy", "eval/accuracy", "eval/pass@1", "kl", "grad_norm", "tokens_per_s", "time/step")


def format_metrics(record: dict[str, Any], keys=SHOWN) -> str:
    parts = []
    for k in keys:
        v = record.get(k)
        if isinstance(v, (int, float)):
            parts.append(f"{'s/step' if k == 'time/step' else k}={v:.4g}")
    return " ".join(parts)


class TrainProgress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, title: str = "train"):
        self.total, self.start, self.title = total, start, title
        self.enabled = enabled
        self._progress = None
        self._task = None
        self._last: dict[str, Any] = {}

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"), transient=False,
                disable=not sys.stderr.isatty(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, completed=self.start, metrics="")
        return self

    def update(self, step: int, record: dict[str, Any]) -> None:
        self._last.update({k: v for k, v in record.items() if isinstance(v, (int, float))})
        if self._progress is not None:
            self._progress.update(self._task, completed=step, metrics=format_metrics(self._last))
            if not sys.stderr.isatty() and (step % 50 == 0 or step == self.total):
                print(f"[{self.title}] step {step}/{self.total} {format_metrics(self._last)}", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False
