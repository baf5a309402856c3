"""The `exact` verifier: the final answer of a completion, compared as a string with the reference answer.

Final-answer rule (`final_answer`), first match wins:

1. the content of the last ``\\boxed{...}`` (braces balanced; ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``);
2. else the text after the last ``####`` (GSM8K's marker);
3. else the text after the last ``:`` (mentor's procedural traces, "Answer: 18");
4. else the whole completion.

Both sides are then normalised by `normalize`: surrounding whitespace removed, one pair of surrounding ``$`` removed,
one trailing ``.`` removed ("18." is "18"). Nothing else: "1,000" differs from "1000" and "0.5" from "1/2" — use
the `math` verifier for mathematical equivalence. The reference answer is normalised but not extracted (a
reference is the answer itself; `mentor.tasks.data.load_rows` extracts GSM8K's "#### N" at load time).
"""

from __future__ import annotations

from ..types import Prompt


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, or None (also when it is unterminated)."""
    start = text.rfind("\\boxed{")
    while start != -1:
        i, depth = start + len("\\boxed{"), 1
        while i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start + len("\\boxed{"):i]
            i += 1
        start = text.rfind("\\boxed{", 0, start)  # unterminated: try an earlier one
    return None


def normalize(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text


def final_answer(completion: str) -> str | None:
    """The final answer of a completion by the rule of the module docstring; None when it is empty."""
    boxed = last_boxed(completion)
    if boxed is not None:
        answer = boxed
    elif "####" in completion:
        answer = completion.rsplit("####", 1)[1]
    elif ":" in completion:
        answer = completion.rsplit(":", 1)[1]
    else:
        answer = completion
    answer = normalize(answer)
    return answer or None


def verify(completion: str, answer: str) -> bool:
    predicted = final_answer(completion)
    return predicted is not None and predicted == normalize(answer)


def score(completion: str, prompt: Prompt) -> float:
    if prompt.answer is None:
        raise ValueError(f"prompt {prompt.id!r}: the exact verifier needs an answer")
    return float(verify(completion, prompt.answer))
