"""Procedural tasks: hand-derived traces, verifiers accept references and reject perturbations, seeds, splits."""

from __future__ import annotations

import random

import pytest

from mentor.config import ConfigError
from mentor.tasks import TASKS, get_task, make_prompts, split_of
from mentor.tasks.procedural import parse_expr, reduce_expr, render_expr

# (task, knobs, params, prompt, trace) — every trace derived by hand in the comment above it.
HAND = [
    # 864+394: 4+4+0=8 -> "08" carry 0; 6+9+0=15 carry 1; 8+3+1=12 carry 1 -> answer "1" + "2" "5" "8" = 1258
    ("add", {}, {"a": 864, "b": 394}, "864+394=", "4+4+0=08,6+9+0=15,8+3+1=12:1258"),
    # 95+7: operands padded: 5+7+0=12 carry 1; 9+0+1=10 carry 1 -> "1" "0" "2" = 102
    ("add", {}, {"a": 95, "b": 7}, "95+7=", "5+7+0=12,9+0+1=10:102"),
    # 347*6: 7*6+0=42 c4; 4*6+4=28 c2; 3*6+2=20 c2 -> 2082
    ("mul", {}, {"a": 347, "b": 6}, "347*6=", "7*6+0=42,4*6+4=28,3*6+2=20:2082"),
    # 347*26: partial 347*6=2082; 347*2: 7*2+0=14 c1, 4*2+1=09 c0, 3*2+0=06 -> 694, shifted 6940;
    # 2082+6940 per digit: 2+0+0=02, 8+4+0=12, 0+9+1=10, 2+6+1=09 -> 9022 = 347*26
    ("mul", {"mult_digits": 2}, {"a": 347, "b": 26}, "347*26=",
     "7*6+0=42,4*6+4=28,3*6+2=20>2082|7*2+0=14,4*2+1=09,3*2+0=06>6940|2+0+0=02,8+4+0=12,0+9+1=10,2+6+1=09:9022"),
    # insertion sort of 42,7,19,3,88: [7,42] -> [7,19,42] -> [3,7,19,42] -> answer [3,7,19,42,88]
    ("sort", {}, {"values": [42, 7, 19, 3, 88]}, "sort(42,7,19,3,88)=", "7,42;7,19,42;3,7,19,42:3,7,19,42,88"),
    # equal values keep their order; two values: the only insertion is the answer, so the scratchpad is empty
    ("sort", {}, {"values": [5, 5]}, "sort(5,5)=", ":5,5"),
    # count a in abcab: running counts a1 b1 c1 a2 b2 -> 2
    ("count", {}, {"char": "a", "text": "abcab"}, "count(a,abcab)=", "a1,b1,c1,a2,b2:2"),
    # (37*12+5)%7: 37%7=2, 12%7=5, 2*5=10, 10%7=3, 5%7=5, 3+5=8, 8%7=1; check: 449 = 64*7+1
    ("mod", {}, {"a": 37, "b": 12, "c": 5, "m": 7}, "(37*12+5)%7=", "37%7=2,12%7=5,2*5=10,10%7=3,5%7=5,3+5=8,8%7=1:1"),
    # (3+4)*2-5 -> 7*2-5 -> 14-5 -> 9
    ("expr", {}, {"expr": "(3+4)*2-5"}, "(3+4)*2-5=", "7*2-5,14-5:9"),
    # 1+2+3*4: the left subtree (1+2) first -> 3+3*4 -> 3+12 -> 15
    ("expr", {}, {"expr": "1+2+3*4"}, "1+2+3*4=", "3+3*4,3+12:15"),
    # 3-(4+5)*2 -> 3-9*2 -> 3-18 -> -15 (negative results are allowed when the params give them)
    ("expr", {}, {"expr": "3-(4+5)*2"}, "3-(4+5)*2=", "3-9*2,3-18:-15"),
    # 2-5*1: 5*1=5 -> 2-5 -> -3; a negative inside an expression would be written (-3)
    ("expr", {}, {"expr": "(2-5)*4"}, "(2-5)*4=", "(-3)*4:-12"),
    # 5 +3 *2 -4: 8, 16, 12
    ("chain", {}, {"start": 5, "ops": ["+3", "*2", "-4"]}, "5;+3;*2;-4=", "5+3=8;8*2=16;16-4=12:12"),
    # labelled: op i carries the i-th letter in the prompt and in its step
    ("chain", {"labels": True}, {"start": 5, "ops": ["+3", "*2", "-4"]}, "5;a+3;b*2;c-4=", "a5+3=8;b8*2=16;c16-4=12:12"),
]


@pytest.mark.parametrize("name,knobs,params,prompt,trace", HAND)
def test_hand_derived_traces(name, knobs, params, prompt, trace):
    task = get_task(name, **knobs)
    p = task.problem(**params)
    assert (p.prompt, p.trace) == (prompt, trace)
    assert p.answer == trace.rsplit(":", 1)[1]
    assert task.verify(trace, p.answer)


def _oracle(name, params) -> str:
    """Independent answers, computed without the task code."""
    if name == "add":
        return str(params["a"] + params["b"])
    if name == "mul":
        return str(params["a"] * params["b"])
    if name == "sort":
        return ",".join(map(str, sorted(params["values"])))
    if name == "count":
        return str(params["text"].count(params["char"]))
    if name == "mod":
        return str((params["a"] * params["b"] + params["c"]) % params["m"])
    if name == "expr":
        return str(eval(params["expr"]))  # only digits, + - * and parentheses (Python's precedence is the same)
    if name == "chain":
        v = params["start"]
        for o in params["ops"]:
            v = {"+": v + int(o[1:]), "-": v - int(o[1:]), "*": v * int(o[1:])}[o[0]]
        return str(v)
    raise AssertionError(name)


SETTINGS = [(name, {}) for name in TASKS] + [
    ("add", {"digits": 7}), ("mul", {"digits": 4, "mult_digits": 3}), ("sort", {"length": 9, "max_value": 999}),
    ("count", {"length": 30, "letters": 5}), ("mod", {"digits": 4, "max_modulus": 97}), ("expr", {"ops": 7}),
    ("chain", {"steps": 40, "max_value": 999}),
]


def _perturb(answer: str, rng: random.Random) -> list[str]:
    """Wrong answers: each digit position changed, a digit dropped, a digit added, a minus sign."""
    out = []
    for i, c in enumerate(answer):
        if c.isdigit():
            out.append(answer[:i] + str((int(c) + rng.randint(1, 9)) % 10) + answer[i + 1:])
    out += [answer[:-1], answer + "0", "-" + answer]
    return [w for w in out if w != answer and w]


@pytest.mark.parametrize("name,knobs", SETTINGS)
def test_references_pass_and_perturbations_fail(name, knobs):
    task = get_task(name, **knobs)
    rng = random.Random(0)
    for _ in range(30):
        p = task.generate(rng)
        assert p.answer == _oracle(name, p.params)
        scratch = p.trace.rsplit(":", 1)[0]
        assert ":" not in scratch
        assert p.prompt.endswith("=") and p.trace == scratch + ":" + p.answer
        assert task.extract(p.trace) == p.answer and task.verify(p.trace, p.answer)
        assert task.problem(**p.params) == p  # params rebuild the problem
        for wrong in _perturb(p.answer, rng):
            assert not task.verify(scratch + ":" + wrong, p.answer), (p.trace, wrong)
            assert not task.verify(p.trace, wrong)
        assert task.extract(scratch) is None and not task.verify(scratch, p.answer)  # no ":" -> no answer


def test_extract_rules():
    task = get_task("add")
    assert task.extract("4+4+0=08:1258") == "1258"
    assert task.extract("x:1:  1258 ") == "1258"  # after the LAST ":", stripped
    assert task.extract("1258") is None and task.extract("abc:") is None and task.extract("") is None
    assert task.verify("junk:1258", "1258") and not task.verify("junk:1258 1", "1258")


def test_default_traces_are_short_and_chain_is_long():
    rng = random.Random(1)
    for name, cls in TASKS.items():
        lengths = [len(cls().generate(rng).trace) for _ in range(200)]
        assert max(lengths) <= 64, (name, max(lengths))
    # chain at 40 steps: each step "v op d=r" is >= 5 characters, 40 steps + 39 separators >= 239
    assert min(len(get_task("chain", steps=40).generate(rng).trace) for _ in range(20)) >= 239


def test_difficulty_knobs_scale():
    rng = random.Random(2)
    # add with d digits: d steps of 8 chars ("6+9+0=15") + (d-1) commas + ":" + d or d+1 answer digits = 10d .. 10d+1
    for d in (1, 3, 6, 10):
        t = get_task("add", digits=d).generate(rng).trace
        assert 10 * d <= len(t) <= 10 * d + 1
    assert get_task("mul", digits=3, mult_digits=2).difficulty == 6
    assert get_task("expr", ops=5).difficulty == 5 and get_task("sort", length=7).difficulty == 7
    p = get_task("expr", ops=5).generate(rng)
    assert sum(p.prompt.count(op) for op in "+-*") == 5 and p.trace.count(",") == 3  # 5 ops: 4 intermediate states


def test_scratchpad_off_gives_answer_only():
    p = get_task("add", scratchpad=False).problem(a=864, b=394)
    assert p.trace == ":1258" and get_task("add").verify(p.trace, "1258")


def test_expr_render_parse_round_trip():
    rng = random.Random(3)
    task = get_task("expr", ops=6)
    for _ in range(200):
        tree = task._tree(rng, 6)
        text = render_expr(tree)
        assert parse_expr(text) == tree
        assert task.problem(expr=text).answer == str(eval(text))
    assert render_expr(("-", 1, ("-", 2, 3))) == "1-(2-3)" and render_expr(("*", ("+", 1, 2), 3)) == "(1+2)*3"
    assert render_expr(("*", -3, 4)) == "(-3)*4" and parse_expr("(-3)*4") == ("*", -3, 4)
    assert reduce_expr(("+", ("*", 2, 3), ("*", 4, 5))) == ("+", 6, ("*", 4, 5))  # left subtree first
    with pytest.raises(ValueError, match="cannot parse"):
        parse_expr("2+*3")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_expr("2 + 3")


def test_make_prompts_reproducible_and_well_formed():
    a = make_prompts("add", 50, seed=7, digits=2)
    b = make_prompts("add", 50, seed=7, digits=2)
    c = make_prompts("add", 50, seed=8, digits=2)
    assert [p.text for p in a] == [p.text for p in b] and [p.id for p in a] == [p.id for p in b]
    assert [p.text for p in a] != [p.text for p in c]
    p = a[3]
    assert p.id == "add-train-7-3" and p.verifier == "task" and p.source == "procedural/add"
    assert p.domain == "arith" and p.difficulty == 2 and p.row == 3
    assert p.meta["task"] == "add" and p.meta["task_args"] == {"scratchpad": True, "digits": 2}
    assert p.meta["trace"].endswith(":" + p.answer)
    assert make_prompts("add", 5, seed=7, digits=2) == a[:5]  # a prefix: n does not change earlier prompts


def test_splits_are_disjoint():
    train = make_prompts("add", 3000, seed=0, digits=2)
    evals = make_prompts("add", 300, seed=0, split="eval", digits=2)
    assert {p.text for p in train}.isdisjoint({p.text for p in evals})
    assert all(split_of(p.text) == "train" for p in train) and all(split_of(p.text) == "eval" for p in evals)
    assert evals[0].id == "add-eval-0-0"
    # "test" is an alias of "eval": same stream, same ids
    assert [p.id for p in make_prompts("add", 5, seed=0, split="test", digits=2)] == [p.id for p in evals[:5]]
    # different seeds for train and eval are still disjoint (the partition does not depend on the seed)
    assert {p.text for p in make_prompts("add", 3000, seed=5, digits=2)}.isdisjoint({p.text for p in evals})
    # about 1 in 10 of the 90*90 two-digit problems is held out
    held_out = sum(split_of(f"{a}+{b}=") == "eval" for a in range(10, 100) for b in range(10, 100))
    assert 0.08 < held_out / 8100 < 0.12


def test_tiny_problem_space_raises_instead_of_looping():
    # count with one character and two letters has 4 problems, all on the train side of the partition
    assert {split_of(f"count({c},{t})=") for c in "ab" for t in "ab"} == {"train"}
    with pytest.raises(ConfigError, match="too small"):
        make_prompts("count", 1, seed=0, split="eval", length=1, letters=2)


def test_config_errors():
    with pytest.raises(ConfigError, match=r"unknown task 'addition'.*'add'.*'chain'"):
        get_task("addition")
    with pytest.raises(ConfigError, match=r"unknown argument 'digit'.*'digits'"):
        get_task("add", digit=3)
    with pytest.raises(ConfigError, match=r"digits must be an integer in \[1, 40\], got 0"):
        get_task("add", digits=0)
    with pytest.raises(ConfigError, match="labels: true supports at most 52 steps, got 60"):
        get_task("chain", steps=60, labels=True)
    with pytest.raises(ConfigError, match="scratchpad must be true or false"):
        get_task("add", scratchpad="yes")
    with pytest.raises(ConfigError, match="split 'dev'"):
        make_prompts("add", 3, seed=0, split="dev")
    assert TASKS["add"](digits=3).name == "add"  # the dispatch table builds instances with knobs
