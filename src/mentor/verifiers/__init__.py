"""Verifiers: the dispatch table from a verifier name to a reward function (DESIGN.md §2).

`VERIFIERS[name](completion, prompt) -> float` gives a reward in [0, 1]; `verify(completion, prompt) -> bool` is
"reward == 1" with the prompt's own verifier (`prompt.verifier`). Completions carry no EOS (the sampler stops at it).

| name  | module                         | what it checks                                                            |
|-------|--------------------------------|---------------------------------------------------------------------------|
| exact | `mentor.verifiers.exact`       | final answer (last \\boxed{}, else after "####", else after the last ":") equals the reference string |
| math  | `mentor.verifiers.math`        | math-verify equivalence of the final answer with the reference            |
| task  | (here) + `mentor.tasks`        | the procedural task named by `prompt.meta["task"]` / `["task_args"]` verifies it |
| code  | `mentor.verifiers.code` (lazy) | sandboxed execution of the model's code against `prompt.answer` (the tests) |

The "code" slot: `mentor.verifiers.code` is imported on first use (it is written separately and may pull in
sandboxing machinery). It must expose ``score(completion: str, prompt: Prompt)`` or, failing that,
``verify(completion: str, prompt: Prompt)``, returning a float in [0, 1] (partial credit allowed: the fraction of
tests passed) or a bool.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Callable

from ..types import Prompt
from . import exact, math

Verifier = Callable[[str, Prompt], float]


@functools.lru_cache(maxsize=256)
def _task(name: str, args_json: str):
    from ..tasks import get_task

    return get_task(name, **json.loads(args_json))


def score_task(completion: str, prompt: Prompt) -> float:
    """The procedural task's own verifier; the prompt must come from `mentor.tasks.make_prompts` (or carry the
    same meta)."""
    if "task" not in prompt.meta or prompt.answer is None:
        raise ValueError(f"prompt {prompt.id!r}: verifier 'task' needs meta['task'] and an answer "
                         "(prompts made by mentor.tasks.make_prompts have both)")
    task = _task(prompt.meta["task"], json.dumps(prompt.meta.get("task_args", {}), sort_keys=True))
    return float(task.verify(completion, prompt.answer))


def score_code(completion: str, prompt: Prompt) -> float:
    """Slot for the sandboxed code verifier, imported lazily (module docstring)."""
    module = importlib.import_module("mentor.verifiers.code")
    if hasattr(module, "score"):
        return float(module.score(completion, prompt))
    return float(module.verify(completion, prompt))


VERIFIERS: dict[str, Verifier] = {
    "exact": exact.score,
    "math": math.score,
    "task": score_task,
    "code": score_code,
}


def get_verifier(name: str) -> Verifier:
    if name not in VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of {sorted(VERIFIERS)}")
    return VERIFIERS[name]


def score(completion: str, prompt: Prompt, name: str | None = None) -> float:
    """Reward in [0, 1] of `completion` under verifier `name` (default: the prompt's own)."""
    return get_verifier(name or prompt.verifier)(completion, prompt)


def verify(completion: str, prompt: Prompt, name: str | None = None) -> bool:
    """True when the completion gets the full reward."""
    return score(completion, prompt, name) >= 1.0
