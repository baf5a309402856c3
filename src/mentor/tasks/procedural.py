"""Procedural verifiable tasks: problems with a difficulty knob, an exact answer and a learnable scratchpad.

Every family turns integer parameters into a `Problem(prompt, answer, trace)`. The trace is the SFT completion:
``scratchpad + ":" + answer`` (the trainer appends EOS). The answer is the text after the last ":" of a completion,
so no scratchpad ever contains ":". Scratchpads are designed for a ~1M-parameter character-level model trained on CPU:
every step is *locally computable* — it reads a few characters of the prompt or of the previous step and writes a
short result — which is what makes them learnable by SFT in minutes (PITFALLS.md: 3-digit addition with the per-digit
scratchpad below reaches 100% in ~5 min on 2 cores).

| name  | domain | knobs (default)                      | prompt              | trace                                                  |
|-------|--------|--------------------------------------|---------------------|--------------------------------------------------------|
| add   | arith  | digits (3)                           | ``864+394=``        | ``4+4+0=08,6+9+0=15,8+3+1=12:1258``                    |
| mul   | arith  | digits (3), mult_digits (1)          | ``347*6=``          | ``7*6+0=42,4*6+4=28,3*6+2=20:2082``                    |
| sort  | algo   | length (5), max_value (99)           | ``sort(42,7,19,3,88)=`` | ``7,42;7,19,42;3,7,19,42:3,7,19,42,88``            |
| count | algo   | length (10), letters (3)             | ``count(a,abcab)=`` | ``a1,b1,c1,a2,b2:2``                                   |
| mod   | arith  | digits (2), max_modulus (13)         | ``(37*12+5)%7=``    | ``37%7=2,12%7=5,2*5=10,10%7=3,5%7=5,3+5=8,8%7=1:1``    |
| expr  | arith  | ops (3), max_operand (9), max_value (999) | ``(3+4)*2-5=`` | ``7*2-5,14-5:9``                                       |
| chain | arith  | steps (6), max_value (99)            | ``5;+3;*2;-4=``     | ``5+3=8;8*2=16;16-4=12:12``                            |

Scratchpad rules, per family:

- add: one step per digit, least significant first, ``a+b+carry=SS`` with the two-digit sum; the answer is the final
  carry (if any) followed by the second digits of the sums in reverse.
- mul: one phase per multiplier digit (least significant first) with per-digit steps ``a*b+carry=PP``, closed by
  ``>partial`` where the partial product is already shifted (``347*20`` is written ``>6940``); then one addition phase
  per further partial product, with the per-digit steps of `add`, closed by ``>running sum``. Phases are joined by
  ``|``; the last phase's closing value is the answer (written after ":" instead of ">").
- sort: insertion sort; each step is the sorted prefix after inserting the next element (``;`` between steps). The
  last insertion is the answer itself, so it is not repeated in the scratchpad.
- count: for each character of the string, the character and the running count of the target so far.
- mod: reduce a and b mod m, multiply, reduce, reduce c, add, reduce.
- expr: successive reductions: each step rewrites the whole expression with one operation evaluated (the leftmost
  operation whose operands are both numbers, after the left operand's subtree is fully reduced, i.e. ordinary
  left-to-right evaluation). Expressions are rendered with the fewest parentheses that keep the tree; a negative
  number inside an expression is written ``(-4)``.
- chain: the long-horizon family (for ADWIN-style experiments): k operations ``+d``, ``-d``, ``*d`` applied left to right
  to a running value; one step ``v op d=r`` per operation, so the scratchpad grows linearly (~8 chars per step: 300+
  characters at steps=40), and an early mistake propagates to the answer. ``labels: true`` tags the i-th operation
  with the i-th letter in the prompt and in its step (``5;a+3;b*2=`` → ``a5+3=8;b8*2=16:16``): the next operation is
  then found by looking up the next letter, a content match a tiny model learns quickly, instead of counting
  positions (at most 52 steps).

Every task also has the knob ``scratchpad`` (default true): false gives the trace ``":" + answer`` (answer only), for
methods that need a real length-accuracy trade-off (ORBIT budget modes).

Parameters are exposed: `Problem.params` holds the integers (and lists / strings) the prompt was built from, and
`task.problem(**params)` rebuilds the problem from them with the task's own solver. Composition-RL substitutes an
integer parameter this way (specs/composition.md §2.4); `problem` accepts any integers, not only those the knobs
would sample (negative operands included where the format allows).

Sampling (`sample`) draws operands with exactly `digits` digits (a leading zero only for digits=1); sort values and
chain values stay in ``[0, max_value]``; expr rejects expressions whose intermediate values leave ``[0, max_value]``.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config import ConfigError

ANSWER_SEP = ":"


@dataclass(frozen=True)
class Problem:
    """One generated problem. `trace` = scratchpad + ":" + answer (no EOS)."""

    prompt: str
    answer: str
    trace: str
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def extract_answer(completion: str) -> str | None:
    """The final answer of a task completion: the text after the last ":", stripped; None when there is none."""
    if ANSWER_SEP not in completion:
        return None
    answer = completion.rsplit(ANSWER_SEP, 1)[1].strip()
    return answer or None


@dataclass(frozen=True, kw_only=True)
class Task:
    """Base class: subclasses set `name`, `domain`, `knob` (the field reported as difficulty), their knob fields,
    `_check` (validation), `sample(rng) -> params` and `solve(**params) -> (prompt, scratchpad, answer)`."""

    name: ClassVar[str]
    domain: ClassVar[str]
    knob: ClassVar[str]

    scratchpad: bool = True  # false: the trace is ":" + answer (no reasoning)

    def __post_init__(self):
        if not isinstance(self.scratchpad, bool):
            raise ConfigError(f"task {self.name!r}: scratchpad must be true or false, got {self.scratchpad!r}")
        self._check()

    def _check(self) -> None:
        raise NotImplementedError

    def _int_knob(self, name: str, lo: int, hi: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(f"task {self.name!r}: {name} must be an integer in [{lo}, {hi}], got {value!r}")

    @property
    def difficulty(self) -> int:
        return int(getattr(self, self.knob))

    @property
    def args(self) -> dict[str, Any]:
        """The knobs, as keyword arguments that rebuild this task."""
        return dataclasses.asdict(self)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        raise NotImplementedError

    def solve(self, **params) -> tuple[str, str, str]:
        raise NotImplementedError

    def problem(self, **params) -> Problem:
        prompt, scratch, answer = self.solve(**params)
        assert ANSWER_SEP not in scratch, f"{self.name}: scratchpad contains {ANSWER_SEP!r}: {scratch!r}"
        trace = (scratch if self.scratchpad else "") + ANSWER_SEP + answer
        return Problem(prompt=prompt, answer=answer, trace=trace, params=params)

    def generate(self, rng: random.Random) -> Problem:
        return self.problem(**self.sample(rng))

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def verify(self, completion: str, answer: str) -> bool:
        return self.extract(completion) == answer.strip()


def _rand_digits(rng: random.Random, digits: int) -> int:
    """A uniform integer with exactly `digits` digits (0-9 for one digit)."""
    lo = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def _add_steps(x: int, y: int) -> list[str]:
    """Per-digit addition steps of non-negative x + y, least significant digit first: "a+b+carry=SS"."""
    xs, ys = str(x)[::-1], str(y)[::-1]
    steps, carry = [], 0
    for i in range(max(len(xs), len(ys))):
        a = int(xs[i]) if i < len(xs) else 0
        b = int(ys[i]) if i < len(ys) else 0
        s = a + b + carry
        steps.append(f"{a}+{b}+{carry}={s:02d}")
        carry = s // 10
    return steps


def _nonneg(task: str, **values: int) -> None:
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"task {task!r}: {k} must be a non-negative integer, got {v!r}")


# ----------------------------------------------------------------------------- families

@dataclass(frozen=True, kw_only=True)
class Add(Task):
    name: ClassVar[str] = "add"
    domain: ClassVar[str] = "arith"
    knob: ClassVar[str] = "digits"

    digits: int = 3  # digits of each operand

    def _check(self):
        self._int_knob("digits", 1, 40)

    def sample(self, rng):
        return {"a": _rand_digits(rng, self.digits), "b": _rand_digits(rng, self.digits)}

    def solve(self, a: int, b: int):
        _nonneg(self.name, a=a, b=b)
        return f"{a}+{b}=", ",".join(_add_steps(a, b)), str(a + b)


@dataclass(frozen=True, kw_only=True)
class Mul(Task):
    name: ClassVar[str] = "mul"
    domain: ClassVar[str] = "arith"
    knob: ClassVar[str] = "digits"

    digits: int = 3  # digits of the multiplicand
    mult_digits: int = 1  # digits of the multiplier (one partial product each)

    def _check(self):
        self._int_knob("digits", 1, 20)
        self._int_knob("mult_digits", 1, 10)

    @property
    def difficulty(self) -> int:
        return self.digits * self.mult_digits  # number of digit products

    def sample(self, rng):
        return {"a": _rand_digits(rng, self.digits), "b": _rand_digits(rng, self.mult_digits)}

    def solve(self, a: int, b: int):
        _nonneg(self.name, a=a, b=b)
        phases: list[tuple[str, int]] = []  # (steps, value that closes the phase)
        partials = []
        for j, bd in enumerate(int(c) for c in reversed(str(b))):
            steps, carry = [], 0
            for ad in (int(c) for c in reversed(str(a))):
                p = ad * bd + carry
                steps.append(f"{ad}*{bd}+{carry}={p:02d}")
                carry = p // 10
            partials.append(a * bd * 10**j)
            phases.append((",".join(steps), partials[-1]))
        total = partials[0]
        for p in partials[1:]:
            phases.append((",".join(_add_steps(total, p)), total + p))
            total += p
        scratch = "|".join(f"{s}>{v}" for s, v in phases[:-1]) + ("|" if len(phases) > 1 else "") + phases[-1][0]
        return f"{a}*{b}=", scratch, str(a * b)


@dataclass(frozen=True, kw_only=True)
class Sort(Task):
    name: ClassVar[str] = "sort"
    domain: ClassVar[str] = "algo"
    knob: ClassVar[str] = "length"

    length: int = 5  # number of values
    max_value: int = 99  # values are drawn from [0, max_value] (repeats allowed)

    def _check(self):
        self._int_knob("length", 1, 50)
        self._int_knob("max_value", 1, 10**9)

    def sample(self, rng):
        return {"values": [rng.randint(0, self.max_value) for _ in range(self.length)]}

    def solve(self, values: list[int]):
        if not values:
            raise ValueError("task 'sort': values must not be empty")
        _nonneg(self.name, **{f"values[{i}]": v for i, v in enumerate(values)})
        prefix, steps = [values[0]], []
        for v in values[1:]:
            k = next((i for i, p in enumerate(prefix) if p > v), len(prefix))  # insert after equal values
            prefix = prefix[:k] + [v] + prefix[k:]
            steps.append(",".join(map(str, prefix)))
        answer = ",".join(map(str, prefix))
        return f"sort({','.join(map(str, values))})=", ";".join(steps[:-1]), answer


@dataclass(frozen=True, kw_only=True)
class Count(Task):
    name: ClassVar[str] = "count"
    domain: ClassVar[str] = "algo"
    knob: ClassVar[str] = "length"

    length: int = 10  # length of the string
    letters: int = 3  # alphabet size: the first `letters` lower-case letters

    def _check(self):
        self._int_knob("length", 1, 200)
        self._int_knob("letters", 2, 26)

    def sample(self, rng):
        alphabet = "abcdefghijklmnopqrstuvwxyz"[: self.letters]
        return {"char": rng.choice(alphabet), "text": "".join(rng.choice(alphabet) for _ in range(self.length))}

    def solve(self, char: str, text: str):
        if not (isinstance(char, str) and len(char) == 1 and char.islower()):
            raise ValueError(f"task 'count': char must be one lower-case letter, got {char!r}")
        if not (isinstance(text, str) and text and text.isalpha() and text.islower()):
            raise ValueError(f"task 'count': text must be non-empty lower-case letters, got {text!r}")
        steps, n = [], 0
        for c in text:
            n += c == char
            steps.append(f"{c}{n}")
        return f"count({char},{text})=", ",".join(steps), str(n)


@dataclass(frozen=True, kw_only=True)
class Mod(Task):
    name: ClassVar[str] = "mod"
    domain: ClassVar[str] = "arith"
    knob: ClassVar[str] = "digits"

    digits: int = 2  # digits of a, b and c in (a*b+c) % m
    max_modulus: int = 13  # m is drawn from [2, max_modulus]

    def _check(self):
        self._int_knob("digits", 1, 12)
        self._int_knob("max_modulus", 2, 10**6)

    def sample(self, rng):
        return {"a": _rand_digits(rng, self.digits), "b": _rand_digits(rng, self.digits),
                "c": _rand_digits(rng, self.digits), "m": rng.randint(2, self.max_modulus)}

    def solve(self, a: int, b: int, c: int, m: int):
        _nonneg(self.name, a=a, b=b, c=c)
        if isinstance(m, bool) or not isinstance(m, int) or m < 2:
            raise ValueError(f"task 'mod': m must be an integer >= 2, got {m!r}")
        ra, rb, rc = a % m, b % m, c % m
        p = ra * rb
        s = p % m + rc
        steps = [f"{a}%{m}={ra}", f"{b}%{m}={rb}", f"{ra}*{rb}={p}", f"{p}%{m}={p % m}",
                 f"{c}%{m}={rc}", f"{p % m}+{rc}={s}", f"{s}%{m}={s % m}"]
        return f"({a}*{b}+{c})%{m}=", ",".join(steps), str((a * b + c) % m)


# expr: a tiny tree language. A node is an int or a tuple (op, left, right).
_PREC = {"+": 1, "-": 1, "*": 2}
_APPLY = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def render_expr(node, root: bool = True) -> str:
    """Text of an expression tree with the fewest parentheses that keep its structure (left-associative)."""
    if isinstance(node, int):
        return str(node) if node >= 0 or root else f"({node})"
    op, left, right = node
    ls, rs = render_expr(left, False), render_expr(right, False)
    if isinstance(left, tuple) and _PREC[left[0]] < _PREC[op]:
        ls = f"({ls})"
    if isinstance(right, tuple) and _PREC[right[0]] <= _PREC[op]:
        rs = f"({rs})"
    return f"{ls}{op}{rs}"


def parse_expr(text: str):
    """Parse `render_expr` output (integers, + - *, parentheses, "(-4)" literals) into a tree."""
    tokens = re.findall(r"\d+|[-+*()]", text)
    if "".join(tokens) != text or not tokens:
        raise ValueError(f"task 'expr': cannot parse {text!r} (allowed: digits, + - * and parentheses)")
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take(expected=None):
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"task 'expr': cannot parse {text!r}: expected {expected or 'a token'} at token {pos}")
        pos += 1
        return tok

    def atom():
        if peek() == "(":
            take("(")
            if peek() == "-":
                take("-")
                value = -int(take())
                take(")")
                return value
            node = expression()
            take(")")
            return node
        tok = take()
        if not tok.isdigit():
            raise ValueError(f"task 'expr': cannot parse {text!r}: unexpected {tok!r} at token {pos - 1}")
        return int(tok)

    def term():
        node = atom()
        while peek() == "*":
            node = (take(), node, atom())
        return node

    def expression():
        node = term()
        while peek() in ("+", "-"):
            node = (take(), node, term())
        return node

    tree = expression()
    if pos != len(tokens):
        raise ValueError(f"task 'expr': cannot parse {text!r}: trailing {tokens[pos]!r}")
    return tree


def reduce_expr(node):
    """Evaluate one operation: the leftmost one whose operands are both numbers (left subtree first)."""
    op, left, right = node
    if isinstance(left, tuple):
        return (op, reduce_expr(left), right)
    if isinstance(right, tuple):
        return (op, left, reduce_expr(right))
    return _APPLY[op](left, right)


def _expr_trace(tree) -> list:
    states = [tree]
    while isinstance(states[-1], tuple):
        states.append(reduce_expr(states[-1]))
    return states


@dataclass(frozen=True, kw_only=True)
class Expr(Task):
    name: ClassVar[str] = "expr"
    domain: ClassVar[str] = "arith"
    knob: ClassVar[str] = "ops"

    ops: int = 3  # number of operations (+ - *)
    max_operand: int = 9  # operands are drawn from [0, max_operand]
    max_value: int = 999  # every intermediate value stays in [0, max_value] (rejection sampling)

    def _check(self):
        self._int_knob("ops", 1, 12)
        self._int_knob("max_operand", 1, 10**6)
        self._int_knob("max_value", self.max_operand, 10**12)

    def _tree(self, rng, ops: int):
        if ops == 0:
            return rng.randint(0, self.max_operand)
        k = rng.randint(0, ops - 1)
        return (rng.choice("+-*"), self._tree(rng, k), self._tree(rng, ops - 1 - k))

    def sample(self, rng):
        for _ in range(10_000):
            tree = self._tree(rng, self.ops)
            if all(0 <= v <= self.max_value for v in _intermediate_values(tree)):
                return {"expr": render_expr(tree)}
        raise ConfigError(f"task 'expr': no expression with ops={self.ops} keeps values in [0, {self.max_value}]")

    def solve(self, expr: str):
        states = _expr_trace(parse_expr(expr))
        if len(states) < 2:
            raise ValueError(f"task 'expr': {expr!r} has no operation")
        return f"{expr}=", ",".join(render_expr(s) for s in states[1:-1]), str(states[-1])


def _intermediate_values(node) -> list[int]:
    if isinstance(node, int):
        return [node]
    op, left, right = node
    lv, rv = _intermediate_values(left), _intermediate_values(right)
    return lv + rv + [_APPLY[op](lv[-1], rv[-1])]


CHAIN_LABELS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, kw_only=True)
class Chain(Task):
    name: ClassVar[str] = "chain"
    domain: ClassVar[str] = "arith"
    knob: ClassVar[str] = "steps"

    steps: int = 6  # number of operations (the scratchpad has one step each)
    max_value: int = 99  # the start and every running value stay in [0, max_value]
    labels: bool = False  # tag op i with the i-th letter in prompt and scratchpad (a content lookup, not counting)

    def _check(self):
        self._int_knob("steps", 1, 1000)
        self._int_knob("max_value", 10, 10**9)
        if not isinstance(self.labels, bool):
            raise ConfigError(f"task 'chain': labels must be true or false, got {self.labels!r}")
        if self.labels and self.steps > len(CHAIN_LABELS):
            raise ConfigError(f"task 'chain': labels: true supports at most {len(CHAIN_LABELS)} steps, got {self.steps}")

    def sample(self, rng):
        v = rng.randint(0, self.max_value)
        start, ops = v, []
        for _ in range(self.steps):
            choices = {
                "+": [d for d in range(1, 10) if v + d <= self.max_value],
                "-": [d for d in range(1, 10) if v - d >= 0],
                "*": [d for d in range(2, 10) if v * d <= self.max_value],
            }
            op = rng.choice([o for o, ds in choices.items() if ds])
            d = rng.choice(choices[op])
            ops.append(f"{op}{d}")
            v = _APPLY[op](v, d)
        return {"start": start, "ops": ops}

    def solve(self, start: int, ops: list[str]):
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"task 'chain': start must be an integer, got {start!r}")
        if not ops:
            raise ValueError("task 'chain': ops must not be empty")
        if self.labels and len(ops) > len(CHAIN_LABELS):
            raise ValueError(f"task 'chain': labels cover at most {len(CHAIN_LABELS)} ops, got {len(ops)}")
        tags = CHAIN_LABELS if self.labels else [""] * len(ops)
        v, steps = start, []
        for i, o in enumerate(ops):
            if not (isinstance(o, str) and re.fullmatch(r"[-+*]\d+", o)):
                raise ValueError(f"task 'chain': ops[{i}] must look like '+3', '-4' or '*2', got {o!r}")
            r = _APPLY[o[0]](v, int(o[1:]))
            steps.append(f"{tags[i]}{v}{o}={r}")
            v = r
        return f"{start};{';'.join(t + o for t, o in zip(tags, ops))}=", ";".join(steps), str(v)


TASKS: dict[str, type[Task]] = {t.name: t for t in (Add, Mul, Sort, Count, Mod, Expr, Chain)}
