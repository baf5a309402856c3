"""Verifiers: exact final-answer rule, math-verify equivalences and rejections, the task verifier, dispatch."""

from __future__ import annotations

import threading

import pytest

from mentor.tasks import make_prompts
from mentor.types import Prompt
from mentor.verifiers import VERIFIERS, get_verifier, score, verify
from mentor.verifiers import exact
from mentor.verifiers import math as mathv


@pytest.mark.parametrize("completion,expected", [
    ("4+4+0=08,6+9+0=15,8+3+1=12:1258", "1258"),      # after the last ":"
    ("She has 5+3=8 apples.\n#### 8", "8"),            # after "####"
    ("so #### 7, and then: 9", "7, and then: 9"),     # "####" wins over ":"
    ("Answer: x. Then \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),  # the last \boxed{} wins over everything
    ("\\boxed{3} or \\boxed{4}", "4"),
    ("\\boxed{4} then \\boxed{5", "4"),                # an unterminated \boxed{ is skipped
    ("  42. ", "42"),                                  # whole text, stripped, trailing "." dropped
    ("$18$", "18"),
    ("", None), ("x:", None), ("\\boxed{}", None),
])
def test_exact_final_answer_rule(completion, expected):
    assert exact.final_answer(completion) == expected


def test_exact_verify():
    assert exact.verify("... #### 18", "18") and exact.verify("The answer is: 18.", " 18 ")
    assert not exact.verify("#### 1,000", "1000")  # no numeric normalisation in `exact`
    assert not exact.verify("#### 0.5", "1/2") and not exact.verify("", "18") and not exact.verify("#### 180", "18")


@pytest.mark.parametrize("completion", [
    "0.5", "1/2", "\\frac{1}{2}", "$\\frac{1}{2}$", "\\boxed{0.5}", "The answer is \\boxed{1/2}.", "so it is 1/2",
    "#### 0.5", "\\boxed{\\dfrac{2}{4}}", "\\boxed{0.50}",
])
def test_math_half_equivalences(completion):
    for gold in ("\\frac{1}{2}", "0.5", "1/2", "\\boxed{1/2}"):
        assert mathv.verify(completion, gold), (completion, gold)


def test_math_symbolic_and_number_formats():
    assert mathv.verify("x^2+2x+1", "(x+1)^2") and mathv.verify("\\boxed{(x+1)^2}", "x^2+2x+1")
    assert mathv.verify("#### 1,000", "1000") and mathv.verify("\\boxed{1000}", "1,000")
    assert mathv.verify("The color is: blue", "blue")  # text answers match through the exact rule


@pytest.mark.parametrize("completion,gold", [
    ("0.6", "\\frac{1}{2}"), ("\\boxed{2/1}", "1/2"), ("x^2+1", "(x+1)^2"), ("\\boxed{-0.5}", "0.5"),
    ("\\boxed{0.6} although 0.5 was tempting", "0.5"),  # the boxed answer has priority
    ("#### 19", "18"), ("no number here", "18"), ("The color is: red", "blue"),
])
def test_math_rejections(completion, gold):
    assert not mathv.verify(completion, gold)


@pytest.mark.parametrize("garbage", ["", "   ", "\\boxed{", "}}}{{\\frac", "$$$", "\\frac{1}{0}", "#### ", "\\boxed{}",
                                     "((((((((((1", "x" * 300, "\x00\x01", "\\sqrt{-}^{^}_"])
def test_math_never_raises_on_malformed_output(garbage):
    assert mathv.verify(garbage, "1/2") is False


def test_math_off_the_main_thread():
    # signal-based timeouts only work in the main thread; off it the verifier runs without them and stays correct
    results = {}

    def work():
        results["yes"] = mathv.verify("\\boxed{0.5}", "\\frac{1}{2}")
        results["no"] = mathv.verify("\\boxed{0.6}", "\\frac{1}{2}")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert results == {"yes": True, "no": False}


def _prompt(answer, verifier, **kw):
    return Prompt(id="p0", text="q", answer=answer, verifier=verifier, **kw)


def test_dispatch_table():
    assert {"exact", "math", "task", "code"} <= set(VERIFIERS)
    assert score("#### 0.5", _prompt("1/2", "math")) == 1.0 and score("#### 0.5", _prompt("1/2", "exact")) == 0.0
    assert score("#### 0.5", _prompt("1/2", "exact"), name="math") == 1.0  # explicit name overrides the prompt's
    assert verify("\\boxed{1/2}", _prompt("0.5", "math")) is True
    with pytest.raises(ValueError, match=r"unknown verifier 'fuzzy'.*'exact'.*'math'"):
        get_verifier("fuzzy")
    with pytest.raises(ValueError, match="needs an answer"):
        score("1", _prompt(None, "exact", meta={}))


def test_task_verifier_uses_the_prompts_task():
    for name, args in [("add", {"digits": 3}), ("sort", {}), ("expr", {"ops": 4}), ("chain", {"steps": 10})]:
        for p in make_prompts(name, 5, seed=0, **args):
            trace = p.meta["trace"]
            assert score(trace, p) == 1.0 and verify(trace, p)
            assert score(trace + "9", p) == 0.0 and score(trace.rsplit(":", 1)[0], p) == 0.0
    with pytest.raises(ValueError, match="needs meta\\['task'\\]"):
        score("x:1", _prompt("1", "task"))
