"""Procedural verifiable tasks and dataset loading.

- `TASKS`: the dispatch table, name -> task class (`procedural.py` documents every family and format). A task
  instance is built with its difficulty knobs, e.g. `TASKS["add"](digits=3)`, and has `name`, `domain`,
  `difficulty`, `args` and
    * `generate(rng: random.Random) -> Problem` with `prompt` (e.g. "864+394="), `answer` (e.g. "1258"), `trace`
      (the SFT completion, scratchpad + ":" + answer, e.g. "4+4+0=08,6+9+0=15,8+3+1=12:1258"; EOS is appended
      by the trainer, not here) and `params` (the integers it was built from; `task.problem(**params)` rebuilds it);
    * `extract(completion) -> str | None`: the text after the last ":" (None when there is none);
    * `verify(completion, answer) -> bool`.
- `get_task(name, **args)`: an instance, with a `ConfigError` naming the allowed tasks / arguments.
- `make_prompts(task, n, seed, split="train", **args) -> list[Prompt]` (below).
- `data.load_rows(path, split, fields, verifier) -> list[Prompt]`: JSONL / Parquet / Hugging Face dataset rows;
  `data.render_prompt(tokenizer, prompt, template)`: the text a model is fed.

Train/eval split (`make_prompts`): the problem space is partitioned by a hash of the prompt text — a problem
belongs to "eval" iff ``sha1(prompt) mod 10 == 0`` (about 10% of the space), independently of the seed, of `n` and
of the task (equal prompt texts always land on the same side, also across tasks and difficulty knobs). Each split
draws i.i.d. problems from its own random stream, seeded by ``"{task}/{split}/{seed}"``, and drops those that fall
on the other side. So a train set and an eval set never share a problem, whatever their seeds and sizes, and the
same arguments always give the same prompts. Problems may repeat within a split (i.i.d. draws; that only happens
in small problem spaces such as 1-digit addition). "test" and "validation" are aliases of "eval".
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from ..config import ConfigError
from ..types import Prompt
from .procedural import TASKS, Problem, Task, extract_answer

__all__ = ["TASKS", "Problem", "Task", "extract_answer", "get_task", "make_prompts", "split_of", "EVAL_MODULUS"]

EVAL_MODULUS = 10  # 1 in EVAL_MODULUS problems (by prompt hash) is held out for evaluation
_SPLIT_ALIASES = {"train": "train", "eval": "eval", "test": "eval", "validation": "eval"}


def get_task(name: str, **args) -> Task:
    """A task instance; unknown names or arguments raise a ConfigError that lists what is allowed."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    cls = TASKS[name]
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ConfigError(f"task {name!r}: unknown argument {unknown[0]!r}; allowed arguments: {allowed}")
    return cls(**args)


def split_of(prompt_text: str) -> str:
    """Which side of the fixed train/eval partition a problem (by its prompt text) belongs to."""
    h = int.from_bytes(hashlib.sha1(prompt_text.encode()).digest()[:8], "big")
    return "eval" if h % EVAL_MODULUS == 0 else "train"


def make_prompts(task_name: str, n: int, seed: int, split: str = "train", **task_args) -> list[Prompt]:
    """`n` reproducible prompts of a procedural task from one side of the train/eval partition (module docstring).

    Each Prompt has text=problem.prompt, the answer, verifier="task", source="procedural/{name}", the task's domain,
    difficulty (its main knob), row=i, id "{name}-{split}-{seed}-{i}" and meta={"trace", "task", "task_args",
    "params"}."""
    if split not in _SPLIT_ALIASES:
        raise ConfigError(f"split {split!r}: choose one of {sorted(_SPLIT_ALIASES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"make_prompts: n must be a non-negative integer, got {n!r}")
    split = _SPLIT_ALIASES[split]
    task = get_task(task_name, **task_args)
    rng = random.Random(f"{task.name}/{split}/{seed}")
    out: list[Prompt] = []
    rejected, max_rejected = 0, 100 * (n + 10)
    while len(out) < n:
        problem = task.generate(rng)
        if split_of(problem.prompt) != split:
            rejected += 1
            if rejected > max_rejected:
                raise ConfigError(
                    f"task {task.name!r} with {task.args}: the {split} side of the partition is (almost) empty after "
                    f"{rejected} draws; the problem space is too small for a held-out split — raise the difficulty")
            continue
        i = len(out)
        out.append(Prompt(
            id=f"{task.name}-{split}-{seed}-{i}", text=problem.prompt, answer=problem.answer, verifier="task",
            source=f"procedural/{task.name}", domain=task.domain, difficulty=task.difficulty, row=i,
            meta={"trace": problem.trace, "task": task.name, "task_args": task.args, "params": problem.params},
        ))
    return out
