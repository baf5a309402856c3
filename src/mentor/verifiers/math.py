"""The `math` verifier: mathematical equivalence through math-verify (Hugging Face's Math-Verify, `parse` + `verify`).

Reference answer (gold): wrapped in ``$...$`` before parsing unless it already contains ``$`` or ``\\boxed``
(PITFALLS.md: bare LaTeX gold such as ``\\frac{1}{2}`` parsed to nothing). Parsed golds are cached. A gold that
parses to nothing only matches by the exact string rule below.

An exact string match of the final answer (the `exact` verifier's rule) is accepted first, without parsing: it is
cheap, and it is the only route for text answers such as ``blue`` (which math-verify reads as the product of
symbols b*l*u*e). Otherwise the prediction is parsed, first candidate that parses to something wins:

1. the content of the last ``\\boxed{...}`` (wrapped in ``$...$``);
2. the text after the last ``####`` (wrapped in ``$...$``);
3. math-verify's own extraction on the whole completion (LaTeX and plain expressions; "the answer is 1/2");
4. the whole completion wrapped in ``$...$`` when it has no ``$`` and is at most `BARE_MAX_CHARS` long (so a bare
   ``x^2+2x+1`` parses; longer text wrapped as LaTeX is slow to parse and never a bare answer).

Cost: math-verify's own extraction (3) is slow on long runs of letters (~1.7 s for 2,000 characters of "xxx…",
measured); typical completions take milliseconds.

Equivalences this gives: ``\\frac{1}{2}`` = ``0.5`` = ``1/2`` = ``\\boxed{0.5}``; ``x^2+2x+1`` = ``(x+1)^2``;
``1,000`` = ``1000``. math-verify's defaults otherwise (float rounding 6 digits, strict symbol matching).

Never raises on model output: every error, and math-verify's `TimeoutException` (a BaseException), gives False.

Timeouts: math-verify bounds each parse / comparison with ``signal.alarm`` (5 s here), which only works in the main
thread of the main interpreter. Off the main thread (a thread pool, some actor runtimes) this module calls it with
timeouts disabled — correct results, but a pathological expression could then run long; run verification in worker
*processes* (their main thread) when that matters. In the main thread, `signal.alarm` replaces any alarm the caller
had set (math-verify cancels it on return).
"""

from __future__ import annotations

import functools
import threading

from ..types import Prompt
from . import exact

TIMEOUT_S = 5  # per parse and per comparison, main thread only (see module docstring)
BARE_MAX_CHARS = 200  # longest completion tried as a bare LaTeX expression


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list:
    from math_verify import parse
    from math_verify.errors import TimeoutException

    try:
        return parse(text, parsing_timeout=_timeout())
    except (Exception, TimeoutException):
        return []


def _wrap(text: str) -> str:
    return f"${text.strip()}$"


@functools.lru_cache(maxsize=65536)
def _gold(answer: str) -> tuple:
    text = answer if ("$" in answer or "\\boxed" in answer) else _wrap(answer)
    return tuple(_parse(text))


def parse_prediction(completion: str) -> list:
    """math-verify's parse of a completion's final answer (the candidates of the module docstring, in order)."""
    candidates = []
    boxed = exact.last_boxed(completion)
    if boxed is not None and boxed.strip():
        candidates.append(_wrap(boxed))
    if "####" in completion:
        candidates.append(_wrap(completion.rsplit("####", 1)[1]))
    candidates.append(completion)
    if "$" not in completion and completion.strip() and len(completion) <= BARE_MAX_CHARS:
        candidates.append(_wrap(completion))
    for text in candidates:
        parsed = _parse(text)
        if parsed:
            return parsed
    return []


def verify(completion: str, answer: str) -> bool:
    """True when the completion's final answer is mathematically equal to `answer`; never raises."""
    from math_verify import verify as mv_verify
    from math_verify.errors import TimeoutException

    try:
        if exact.verify(completion, answer):
            return True
        gold = list(_gold(answer))
        if not gold:
            return False
        pred = parse_prediction(completion)
        if not pred:
            return False
        return bool(mv_verify(gold, pred, timeout_seconds=_timeout()))
    except (Exception, TimeoutException):
        return False


def score(completion: str, prompt: Prompt) -> float:
    if prompt.answer is None:
        raise ValueError(f"prompt {prompt.id!r}: the math verifier needs an answer")
    return float(verify(completion, prompt.answer))
