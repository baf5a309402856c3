"""Composition-RL: compose verifiable problems into harder verifiable problems (specs/composition.md).

Paper: Xu et al., "Composition-RL" (arXiv 2602.12036), Sequential Prompt Composition (SPC): the answer of problem 1
defines a variable X, one numeric constant of problem 2 becomes a variable Y, and a relation pins Y to that constant
("Y is d more than X"); the composed answer is problem 2's answer. Depth K chains K problems the same way.

Variant implemented: mentor's *exact* operator (spec §2.4), no LLM in the default path:

    v1  = exact value of P1's answer (Integer / Rational; decimals via Rational(str); sets → min (or max); a:b → a;
          an interval → a finite bound only when `interval` says which; irrational only with allow_irrational)
    lit = P2's literal: integer > fraction > decimal, then the smallest value, then the first occurrence; never inside
          an identifier (x2, CO2, 2x), a subscript (_1, _{12}), a LaTeX command, or a line-initial "1." / "(2)"
    d   = lit − v1 (sympy, exact), checked: simplify(v1 + d − lit) == 0
    text (style "words", the spec's text):
          Problem 1: {q1}\\nLet X be the answer to Problem 1.\\nY is {d} more than X.   (or "{-d} less than")
          \\nProblem 2: {q2 with lit → Y}\\nGive the final answer to Problem 2.
    answer, verifier = P2's; depth K continues numbering and symbols (Z, W, ...), answer = PK's.

Procedural tasks (`mentor.tasks`): the literal is the smallest *integer parameter* of the task (first in parameter
order on ties) and the task's own solver rebuilds the problem from Y's value, so the composed answer is the task's
answer by construction and stays `verifier="task"`. Composed procedural prompts get an exact trace that chains the
component traces (SFT on compositions is legitimate); the model still answers after the last ":":

    {scratch_1}>X={a1};{relation steps}>Y={v2};{scratch_2}:{a2}

where the relation steps are the per-digit steps of X + d (``a+b+carry=SS``, as in `add`) or of X − |d|
(``a-b-borrow=BD``: B the new borrow, D the digit). Style "compact" (procedural prompts only, for tiny models)
writes ``X=864+394;Y=X-723;Y+512=`` instead of the sentences.

Departures and filled gaps (spec §2.2 is an 11-step LLM pipeline): no LLM picks v1 or the literal — fixed rules do;
answers that cannot be valued exactly are skipped with a reason (`SKIP_REASONS`) instead of asked to an LLM; number
words and non-base-10 literals are not candidates; the optional LLM rewrite (`RewriteConfig`, off by default) only
restyles the exact text and is rejected unless every number and symbol survives (the spec's extra solver call that
recovers X is not implemented). `seeds=solved` reads pass rates the transform itself observes (`update`) rather than
the selector's history, and cannot be combined with a separate first pool (its prompts are never sampled).

Online: `CompositionTransform` (rl.transform: composition) composes selected prompts before sampling, the selected
prompt being the last problem of its chain; depth follows `mentor.tasks.curriculum`. Offline: `mentor data compose`
(`mentor.tasks.compose_cli`) writes JSONL rows (`row_of` / `prompt_of_row` round-trip) and a ledger with skip counts.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy

from ..config import ConfigError, from_dict
from ..types import Prompt
from .curriculum import CurriculumConfig, DepthCurriculum
from .procedural import ANSWER_SEP, _add_steps

SYMBOLS = ("X", "Y", "Z", "W", "U", "V", "S", "T", "P", "Q", "R", "M", "N", "K", "L", "J", "H", "G", "F")
SKIP_REASONS = ("non_numeric_answer", "irrational_answer", "no_literal", "no_fresh_symbols", "check_failed",
                "compact_needs_procedural", "no_seed")
_KIND_RANK = {"integer": 0, "fraction": 1, "decimal": 2}


@dataclass(frozen=True)
class Skip:
    """A pair (or chain) that cannot be composed safely; `reason` is one of SKIP_REASONS."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Literal:
    """A numeric constant in a problem text: `text[start:end]` spells `value`."""

    start: int
    end: int
    value: sympy.Rational
    kind: str  # integer | fraction | decimal
    param: str | None = None  # procedural tasks: the substituted parameter (name or "values[i]")


# ----------------------------------------------------------------------------- exact values (pure)

_NUM = r"-?\d+(?:\.\d+)?"


def answer_value(answer: str, multi_value: str = "min", interval: str = "off", allow_irrational: bool = False):
    """The exact value v1 of an answer string, or a Skip. Simple forms are parsed without floats ("0.5" →
    Rational(1, 2), "1,000" → 1000, "\\frac{7}{2}" / "7/2" → 7/2, "a:b" → a); anything else through math-verify."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"^\\boxed\{(.*)\}$", r"\1", s).strip()
    plain = s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s) else s
    if re.fullmatch(_NUM, plain):
        return sympy.Rational(plain)
    m = re.fullmatch(r"(-)?\\[dt]?frac\{(-?\d+)\}\{(\d+)\}", s) or re.fullmatch(r"(-)?(-?\d+)\s*/\s*(\d+)", s)
    if m and int(m.group(3)) != 0:
        return (-1 if m.group(1) else 1) * sympy.Rational(int(m.group(2)), int(m.group(3)))
    m = re.fullmatch(rf"({_NUM})\s*:\s*({_NUM})", s)
    if m:
        return sympy.Rational(m.group(1))
    m = re.fullmatch(rf"[\(\[]\s*({_NUM})\s*,\s*({_NUM})\s*[\)\]]", s)
    if m and s[0] + s[-1] != "()":  # a half-open or closed interval (an open pair "(1, 2)" reads as a set below)
        if interval == "off":
            return Skip("non_numeric_answer", f"interval {s!r} (interval rule off)")
        return sympy.Rational(m.group(1 if interval == "lower" else 2))
    return _value_via_math_verify(s, multi_value, allow_irrational)


def _value_via_math_verify(s: str, multi_value: str, allow_irrational: bool):
    from math_verify import parse

    try:
        parsed = parse(f"${s}$")
    except Exception as e:  # math-verify raises assorted parser errors on odd input
        return Skip("non_numeric_answer", f"{s!r}: {type(e).__name__}")
    expr = next((p for p in parsed if isinstance(p, sympy.Basic)), None)
    if expr is None:
        return Skip("non_numeric_answer", f"{s!r} does not parse")
    if isinstance(expr, (sympy.FiniteSet, sympy.Tuple)):
        items = list(expr)
        if not items or not all(getattr(i, "is_number", False) and i.is_real for i in items):
            return Skip("non_numeric_answer", f"{s!r}: not a set of real numbers")
        expr = (min if multi_value == "min" else max)(items, key=lambda v: float(v))
    if isinstance(expr, sympy.Float):
        expr = sympy.Rational(str(expr))
    if not getattr(expr, "is_number", False) or not expr.is_real:
        return Skip("non_numeric_answer", f"{s!r} is not a real number")
    if not expr.is_rational and not allow_irrational:
        return Skip("irrational_answer", f"{s!r} = {expr} is not rational (allow_irrational is off)")
    return sympy.nsimplify(expr) if expr.is_rational else expr


# ----------------------------------------------------------------------------- literals (pure)

_LITERAL_RE = re.compile(
    r"(?P<frac>\\[dt]?frac\{(?P<fn>\d+)\}\{(?P<fd>\d+)\})"
    r"|(?P<slash>(?P<sn>\d+)/(?P<sd>\d+))"
    r"|(?P<dec>\d+\.\d+)"
    r"|(?P<big>\d{1,3}(?:,\d{3})+)(?![\d.])"
    r"|(?P<int>\d+)")


def find_literals(text: str) -> list[Literal]:
    """Eligible numeric literals of a problem text (module docstring rules), in order of occurrence."""
    out = []
    for m in _LITERAL_RE.finditer(text):
        a, b = m.span()
        before, after = text[max(0, a - 2):a], text[b:b + 1]
        if before[-1:].isalnum() or before[-1:] in ("_", ".") or before.endswith("_{") or after.isalpha() or after == "_":
            continue  # identifier (x2, CO2, 2x), subscript (_1, _{12}), a decimal's tail
        if m.group("frac") is None and re.search(r"\\[A-Za-z]*$", text[:a]):
            continue  # glued to a LaTeX command name
        prefix = text[text.rfind("\n", 0, a) + 1:a].strip()
        if (prefix == "" and re.match(r"[.)](\s|$)", text[b:b + 2])) or (prefix == "(" and text[b:b + 1] == ")"):
            continue  # enumeration marker "1." / "3)" / "(2)" at the start of a line
        if m.group("frac") or m.group("slash"):
            n, d = (m.group("fn"), m.group("fd")) if m.group("frac") else (m.group("sn"), m.group("sd"))
            if int(d) == 0:
                continue
            out.append(Literal(a, b, sympy.Rational(int(n), int(d)), "fraction"))
        elif m.group("dec"):
            out.append(Literal(a, b, sympy.Rational(m.group("dec")), "decimal"))
        else:
            out.append(Literal(a, b, sympy.Integer(int(m.group(0).replace(",", ""))), "integer"))
    return out


def pick_literal(literals: list[Literal]) -> Literal | None:
    """Integer > fraction > decimal, then the smallest value, then the first occurrence."""
    if not literals:
        return None
    return min(enumerate(literals), key=lambda il: (_KIND_RANK[il[1].kind], il[1].value, il[0]))[1]


def procedural_literal(prompt: Prompt) -> Literal | None:
    """The smallest integer parameter of a procedural prompt (first in parameter order on ties), located at the first
    whole-integer occurrence of its value in the prompt text."""
    cands = []
    for name, v in prompt.meta.get("params", {}).items():
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            cands.append((v, name))
        elif isinstance(v, list):
            cands += [(x, f"{name}[{i}]") for i, x in enumerate(v) if isinstance(x, int) and not isinstance(x, bool)
                      and x >= 0]
    for v, name in sorted(cands, key=lambda c: c[0]):  # stable: parameter order on ties
        m = re.search(rf"(?<!\d){v}(?!\d)", prompt.text)
        if m:
            return Literal(m.start(), m.end(), sympy.Integer(v), "integer", param=name)
    return None


def fresh_symbols(texts: list[str], n: int) -> list[str] | None:
    """The first `n` of SYMBOLS that occur as a token in none of `texts` (None when there are not enough)."""
    used = set()
    for t in texts:
        used |= set(re.findall(r"(?<![A-Za-z])[A-Z](?![A-Za-z])", t))
    free = [s for s in SYMBOLS if s not in used]
    return free[:n] if len(free) >= n else None


def relation_text(y: str, x: str, d) -> str:
    return f"{y} is {d} more than {x}." if d >= 0 else f"{y} is {-d} less than {x}."


def _sub_steps(x: int, y: int) -> list[str]:
    """Per-digit subtraction steps of x − y (x ≥ y ≥ 0), least significant digit first: "a-b-borrow=BD"."""
    xs, ys = str(x)[::-1], str(y)[::-1]
    steps, borrow = [], 0
    for i in range(len(xs)):
        a, b = int(xs[i]), int(ys[i]) if i < len(ys) else 0
        r = a - b - borrow
        new = int(r < 0)
        steps.append(f"{a}-{b}-{borrow}={new}{r + 10 * new}")
        borrow = new
    return steps


# ----------------------------------------------------------------------------- the operator

@dataclass
class ComposeConfig:
    style: str = "words"  # "words" (spec text) | "compact" (procedural prompts only: X=...;Y=X-d;...=)
    multi_value: str = "min"  # several values in an answer: "min" | "max"
    interval: str = "off"  # interval answers: "off" (skip) | "lower" | "upper" bound
    allow_irrational: bool = False  # irrational v1 (then d is an exact irrational expression)

    def __post_init__(self):
        for name, allowed in (("style", ("words", "compact")), ("multi_value", ("min", "max")),
                              ("interval", ("off", "lower", "upper"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"composition.{name}: {getattr(self, name)!r} is not allowed; choose one of {list(allowed)}")


def _is_procedural(p: Prompt) -> bool:
    return p.verifier == "task" and "params" in p.meta and "task" in p.meta


def compose_chain(chain: list[Prompt], cfg: ComposeConfig = ComposeConfig()) -> Prompt | Skip:
    """Compose P1..PK (K ≥ 2) into one prompt whose answer and verifier are PK's (spec §2.4), or a Skip."""
    if len(chain) < 2:
        raise ValueError(f"compose_chain: need at least 2 problems, got {len(chain)}")
    for p in chain:
        if p.text is None or p.answer is None:
            raise ValueError(f"compose_chain: prompt {p.id!r} needs a text and an answer (chat prompts are not composed)")
    if cfg.style == "compact" and not all(_is_procedural(p) and p.text.endswith("=") for p in chain):
        return Skip("compact_needs_procedural", "style=compact needs procedural prompts ending in '='")
    syms = fresh_symbols([p.text for p in chain], 2 * (len(chain) - 1))
    if syms is None:
        return Skip("no_fresh_symbols")
    links, bodies = [], [chain[0].text]
    for i in range(1, len(chain)):
        prev, cur = chain[i - 1], chain[i]
        if _is_procedural(prev):
            v1 = sympy.Integer(int(prev.answer)) if re.fullmatch(r"-?\d+", prev.answer.strip()) else \
                Skip("non_numeric_answer", f"procedural answer {prev.answer!r}")
        else:
            v1 = answer_value(prev.answer, cfg.multi_value, cfg.interval, cfg.allow_irrational)
        if isinstance(v1, Skip):
            return v1
        lit = procedural_literal(cur) if _is_procedural(cur) else pick_literal(find_literals(cur.text))
        if lit is None:
            return Skip("no_literal", f"prompt {cur.id!r}")
        d = sympy.nsimplify(lit.value - v1) if v1.is_rational else sympy.simplify(lit.value - v1)
        if sympy.simplify(v1 + d - lit.value) != 0:
            return Skip("check_failed", f"{v1} + {d} != {lit.value}")
        x, y = syms[2 * i - 2], syms[2 * i - 1]
        bodies.append(cur.text[:lit.start] + y + cur.text[lit.end:])
        links.append({"first": prev.id, "second": cur.id, "x": x, "y": y, "v1": str(v1), "d": str(d),
                      "literal": cur.text[lit.start:lit.end], "literal_value": str(lit.value), "kind": lit.kind,
                      "span": [lit.start, lit.end], "param": lit.param, "checks": ["exact_difference"]})
    last = chain[-1]
    prov = {"depth": len(chain), "style": cfg.style, "links": links,
            "chain": [{"id": p.id, "source": p.source, "domain": p.domain, "answer": p.answer} for p in chain]}
    meta = {k: v for k, v in last.meta.items() if k not in ("trace", "composition")}
    trace = _composed_trace(chain, links)
    if trace is not None:
        meta["trace"] = trace
    meta["composition"] = prov
    return Prompt(id=f"comp{len(chain)}:" + "|".join(p.id for p in chain), text=render(bodies, links, cfg.style),
                  answer=last.answer, verifier=last.verifier, source="composition", domain=last.domain,
                  difficulty=last.difficulty, meta=meta)


def render(bodies: list[str], links: list[dict], style: str) -> str:
    """The composed text from the problem texts (literals already replaced by symbols) and the links."""
    K = len(bodies)
    if style == "compact":
        parts = []
        for i, link in enumerate(links):
            d = sympy.sympify(link["d"])
            parts.append(f"{link['x']}={bodies[i][:-1]}")
            parts.append(f"{link['y']}={link['x']}{'+' if d >= 0 else '-'}{abs(d)}")
        return ";".join(parts + [bodies[-1]])
    lines = [f"Problem 1: {bodies[0]}"]
    for i, link in enumerate(links):
        lines += [f"Let {link['x']} be the answer to Problem {i + 1}.",
                  relation_text(link["y"], link["x"], sympy.sympify(link["d"])), f"Problem {i + 2}: {bodies[i + 1]}"]
    return "\n".join(lines + [f"Give the final answer to Problem {K}."])


def _composed_trace(chain: list[Prompt], links: list[dict]) -> str | None:
    """The exact scratchpad of a procedural chain with integer relations (module docstring), else None."""
    if not all(_is_procedural(p) and "trace" in p.meta for p in chain):
        return None
    parts = []
    for p, link in zip(chain, links):
        scratch = p.meta["trace"].rsplit(ANSWER_SEP, 1)[0]
        a, d = int(p.answer), int(sympy.Integer(link["d"]))
        steps = _add_steps(a, d) if d >= 0 else _sub_steps(a, -d) if a + d >= 0 else None
        if steps is None:
            return None
        parts.append((f"{scratch}>" if scratch else "") + f"{link['x']}={a}")
        parts.append(",".join(steps) + f">{link['y']}={a + d}")
    return ";".join(parts) + ";" + chain[-1].meta["trace"]


def recover_last(composed: Prompt) -> str:
    """Problem K's original text from a composed prompt: its section with the last symbol replaced by the literal."""
    prov = composed.meta["composition"]
    link, K = prov["links"][-1], prov["depth"]
    if prov["style"] == "compact":
        body = composed.text.rsplit(";", 1)[1]
    else:
        body = composed.text.split(f"\nProblem {K}: ", 1)[1].rsplit(f"\nGive the final answer to Problem {K}.", 1)[0]
    s = link["span"][0]
    assert body[s:s + len(link["y"])] == link["y"], f"{composed.id}: symbol {link['y']} not at its recorded span"
    return body[:s] + link["literal"] + body[s + len(link["y"]):]


def recompute_procedural_answer(composed: Prompt) -> str:
    """Rebuild the last procedural problem with its substituted parameter set to Y = v1 + d (as the composed text
    defines it) and return the task's own answer."""
    from . import get_task

    link = composed.meta["composition"]["links"][-1]
    y = sympy.sympify(link["v1"]) + sympy.sympify(link["d"])
    params = json.loads(json.dumps(composed.meta["params"]))
    name, _, idx = link["param"].partition("[")
    if idx:
        params[name][int(idx[:-1])] = int(y)
    else:
        params[name] = int(y)
    return get_task(composed.meta["task"], **composed.meta["task_args"]).problem(**params).answer


# ----------------------------------------------------------------------------- optional LLM rewrite

@dataclass
class RewriteConfig:
    endpoint: str = ""  # OpenAI-compatible base URL (".../v1" or a full ".../chat/completions"); "" = off
    model: str = "default"
    temperature: float = 0.1  # released pipeline [code]
    top_p: float = 0.7
    max_tokens: int = 4096
    seed: int = 42
    tries: int = 2
    timeout_s: float = 30.0


_REWRITE_PROMPT = ("Rewrite the following composed math problem as one fluent problem. Keep every number and every "
                   "variable name exactly; do not solve it; reply with the rewritten problem only.\n\n{text}")


def rewrite_guard(composed: Prompt, candidate: str) -> str | None:
    """Why an LLM rewrite is unacceptable (None when accepted): every number of the problem bodies and relations
    and every symbol must survive, and no substituted literal may come back in place of its variable."""
    prov = composed.meta["composition"]
    core = re.sub(r"Problem \d+: |Let [A-Z] be the answer to Problem \d+\.|Give the final answer to Problem \d+\.",
                  "", composed.text)
    numbers = lambda t: Counter(re.findall(r"\d+(?:[.,/]\d+)*", t))  # noqa: E731
    want, got = numbers(core), numbers(candidate)
    missing = sorted((want - got).elements())
    if missing:
        return f"dropped number {missing[0]}"
    for link in prov["links"]:
        for sym in (link["x"], link["y"]):
            if not re.search(rf"(?<![A-Za-z]){sym}(?![A-Za-z])", candidate):
                return f"dropped symbol {sym}"
        if got[link["literal"]] > want[link["literal"]]:
            return f"literal {link['literal']} reinstated"
    return None


def _chat(cfg: RewriteConfig, text: str) -> str:
    url = cfg.endpoint.rstrip("/")
    if not url.endswith("/chat/completions"):
        url += "/chat/completions" if url.endswith("/v1") else "/v1/chat/completions"
    body = json.dumps({"model": cfg.model, "messages": [{"role": "user", "content": _REWRITE_PROMPT.format(text=text)}],
                       "temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
                       "seed": cfg.seed}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as r:
        out = json.loads(r.read().decode())
    content = out["choices"][0]["message"]["content"]
    if not isinstance(content, str) or not content.strip():
        raise ValueError("empty content")
    return content.strip()


def rewrite(composed: Prompt, cfg: RewriteConfig) -> tuple[Prompt, str]:
    """Try up to `cfg.tries` rewrites; the first that passes `rewrite_guard` replaces the text. Returns the prompt and
    a status ("accepted", "rejected: <why>", "error: <type>"); any failure keeps the exact text."""
    status = "off"
    for _ in range(max(1, cfg.tries)):
        try:
            cand = _chat(cfg, composed.text)
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
            status = f"error: {type(e).__name__}"
            continue
        why = rewrite_guard(composed, cand)
        if why is None:
            meta = {**composed.meta, "composition": {**composed.meta["composition"], "rewrite": "accepted",
                                                       "exact_text": composed.text}}
            return dataclasses.replace(composed, text=cand, meta=meta), "accepted"
        status = f"rejected: {why}"
    meta = {**composed.meta, "composition": {**composed.meta["composition"], "rewrite": status}}
    return dataclasses.replace(composed, meta=meta), status


# ----------------------------------------------------------------------------- chains from pools

@dataclass
class CompositionConfig:
    """`rl.transform_args` of `rl.transform: composition` (spec §2.5 defaults)."""

    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    seeds: str = "all"  # "all" | "solved": first problems only from prompts last seen at pass rate 1
    solved_min_samples: int = 8  # a "solved" observation needs at least this many rollouts
    first: dict[str, Any] = field(default_factory=dict)  # cross-domain first pool (`load_pool`); {} = the RL pool
    max_uses: int = 4  # times a prompt may serve as a seed per epoch (then all counters reset)
    tries: int = 8  # random chains tried per prompt before it stays original (skips counted)

    def __post_init__(self):
        if self.seeds not in ("all", "solved"):
            raise ConfigError(f"rl.transform_args.seeds: {self.seeds!r} is not allowed; choose one of ['all', 'solved']")
        if self.seeds == "solved" and self.first:
            raise ConfigError("rl.transform_args: seeds=solved needs the RL pool as first pool (first: {}); a separate "
                              "first pool is never sampled, so its pass rates are unknown")
        if self.max_uses < 1 or self.tries < 1:
            raise ConfigError("rl.transform_args: max_uses and tries must be >= 1")


def load_pool(spec: dict[str, Any], where: str = "first") -> list[Prompt]:
    """A prompt pool from {"task", "task_args", "n", "seed", "split"} (procedural) or {"path", "verifier",
    "prompt_field", "limit"} (a dataset; `mentor.tasks.data.load_rows`)."""
    from . import make_prompts

    if "task" in spec:
        extra = set(spec) - {"task", "task_args", "n", "seed", "split"}
        if extra:
            raise ConfigError(f"{where}: unknown key {sorted(extra)[0]!r} for a task pool")
        return make_prompts(spec["task"], int(spec.get("n", 200)), int(spec.get("seed", 0)), spec.get("split", "train"),
                            **spec.get("task_args", {}))
    if "path" in spec:
        from ..config import FieldMap
        from .data import load_rows

        extra = set(spec) - {"path", "verifier", "prompt_field", "limit"}
        if extra:
            raise ConfigError(f"{where}: unknown key {sorted(extra)[0]!r} for a dataset pool")
        return load_rows(spec["path"], fields=FieldMap(prompt=spec.get("prompt_field", "prompt")),
                         verifier=spec.get("verifier", "math"), limit=spec.get("limit"))
    raise ConfigError(f"{where}: expected a mapping with 'task' or 'path', got {spec!r}")


class Composer:
    """Draws chains ending at a given prompt from a first pool (seed-use counters, skip counts) and composes them."""

    def __init__(self, first_pool: list[Prompt], cfg: CompositionConfig):
        if not first_pool:
            raise ConfigError("composition: the first pool is empty")
        self.first, self.cfg = first_pool, cfg
        self.uses: Counter = Counter()
        self.skips: Counter = Counter()
        # positions of first-pool prompts under `max_uses` this epoch, kept up to date so that drawing a chain costs
        # O(depth), not O(pool) (a 16k-row `mentor data compose` took minutes with a scan per chain)
        self._index = {p.id: i for i, p in enumerate(first_pool)}
        self._fresh: list[int] | None = None
        self._where: dict[int, int] = {}

    def _fresh_positions(self) -> list[int]:
        if self._fresh is None:
            self._fresh = [i for i, p in enumerate(self.first) if self.uses[p.id] < self.cfg.max_uses]
            self._where = {i: j for j, i in enumerate(self._fresh)}
        return self._fresh

    def _retire(self, i: int) -> None:
        """Swap-remove pool position i from the fresh list."""
        j = self._where.pop(i, None)
        if j is None:
            return
        tail = self._fresh.pop()
        if tail != i:
            self._fresh[j], self._where[tail] = tail, j

    def _draw(self, last: Prompt, k: int, rng: random.Random) -> list[Prompt] | None:
        """k distinct fresh seeds other than `last`; when fewer remain, an epoch of seed uses is over (counters reset)."""
        fresh = self._fresh_positions()
        if len(fresh) - (self._index.get(last.id) in self._where) < k:
            self.uses.clear()
            self._fresh = None
            fresh = self._fresh_positions()
            if len(fresh) - (self._index.get(last.id) in self._where) < k:
                return None
        picks = [self.first[fresh[j]] for j in rng.sample(range(len(fresh)), min(k + 1, len(fresh)))]
        return [p for p in picks if p.id != last.id][:k]

    def _draw_from(self, eligible: list[Prompt], k: int, rng: random.Random) -> list[Prompt]:
        fresh = [p for p in eligible if self.uses[p.id] < self.cfg.max_uses]
        if len(fresh) < k:  # an epoch of seed uses is over
            for p in eligible:
                self.uses.pop(p.id, None)
            fresh = eligible
        return rng.sample(fresh, k)

    def chain_for(self, last: Prompt, depth: int, rng: random.Random, solved: set[str] | None = None) -> Prompt | None:
        k, eligible = depth - 1, None  # None: any other prompt of the first pool, drawn from the fresh index
        if solved is not None:  # seeds restricted to solved prompts: the set changes every step, scan the pool
            self._fresh = None
            eligible = [p for p in self.first if p.id != last.id and p.id in solved]
            if len(eligible) < k:
                self.skips["no_seed"] += 1
                return None
        for _ in range(self.cfg.tries):
            seeds = self._draw(last, k, rng) if eligible is None else self._draw_from(eligible, k, rng)
            if seeds is None:
                self.skips["no_seed"] += 1
                return None
            out = compose_chain(seeds + [last], self.cfg.compose)
            if isinstance(out, Skip):
                self.skips[out.reason] += 1
                continue
            for p in seeds:
                self.uses[p.id] += 1
                if self._fresh is not None and self.uses[p.id] >= self.cfg.max_uses:
                    self._retire(self._index[p.id])
            if self.cfg.rewrite.endpoint:
                out, _ = rewrite(out, self.cfg.rewrite)
            return out
        return None


# ----------------------------------------------------------------------------- the online transform

def depth_of(p: Prompt) -> int:
    return int(p.meta.get("composition", {}).get("depth", 1))


class CompositionTransform:
    """`rl.transform: composition`: composes selected prompts before sampling (see module docstring).

    Each selected prompt draws a depth from the curriculum; depth ≥ 2 makes it the last problem of a random chain
    (seeds from the first pool; `seeds=solved` keeps those last observed at pass rate 1); a prompt whose chains all
    skip stays original. Randomness is a fresh `random.Random` per (seed, step, call), so resume is exact."""

    def __init__(self, pool: list[Prompt], seed: int = 0, args: dict | None = None):
        self.cfg = from_dict(CompositionConfig, args or {}, "rl.transform_args")
        self.pool, self.seed = pool, seed
        self.composer = Composer(load_pool(self.cfg.first, "rl.transform_args.first") if self.cfg.first else pool, self.cfg)
        self.curriculum = DepthCurriculum(self.cfg.curriculum)
        self.solved: set[str] = set()
        self.calls = [-1, 0]  # [step, apply calls in that step]
        self.step_depths: Counter = Counter()  # depth -> prompts emitted this step
        self.step_outcomes: dict[int, list[int]] = {}  # depth -> [correct, total] observed this step

    def apply(self, prompts: list[Prompt], step: int) -> list[Prompt]:
        if self.calls[0] != step:
            self.calls, self.step_depths = [step, 0], Counter()
        rng = random.Random(f"composition/{self.seed}/{step}/{self.calls[1]}")
        self.calls[1] += 1
        solved = self.solved if self.cfg.seeds == "solved" else None
        out = []
        for p in prompts:
            depth = self.curriculum.sample_depth(step, rng)
            q = self.composer.chain_for(p, depth, rng, solved) if depth > 1 else None
            out.append(q or p)
            self.step_depths[depth_of(out[-1])] += 1
        return out

    def update(self, groups, step: int) -> None:
        counts: dict[int, list[int]] = {}
        for g in groups:
            d = depth_of(g.prompt)
            c = counts.setdefault(d, [0, 0])
            c[0] += sum(g.correct)
            c[1] += len(g.correct)
            if d == 1 and len(g.correct) >= self.cfg.solved_min_samples:
                (self.solved.add if all(g.correct) else self.solved.discard)(g.prompt.id)
        self.step_outcomes = counts
        self.curriculum.observe(step, {d: (c, n) for d, (c, n) in counts.items()})

    def metrics(self) -> dict[str, float]:
        n = sum(self.step_depths.values())
        m = {"composition/max_depth": float(self.curriculum.max_depth(max(self.calls[0], 0))),
             "composition/solved_fraction": len(self.solved) / len(self.pool)}
        if n:
            m["composition/fraction"] = sum(v for d, v in self.step_depths.items() if d > 1) / n
            m.update({f"composition/depth{d}": v / n for d, v in sorted(self.step_depths.items())})
        m.update({f"composition/pass_rate/depth{d}": c / t for d, (c, t) in sorted(self.step_outcomes.items()) if t})
        m.update({f"composition/skip/{r}": float(v) for r, v in sorted(self.composer.skips.items())})
        return m

    def state_dict(self) -> dict:
        return {"curriculum": self.curriculum.state_dict(), "solved": sorted(self.solved), "calls": list(self.calls),
                "uses": dict(self.composer.uses), "skips": dict(self.composer.skips),
                "step_depths": {str(k): v for k, v in self.step_depths.items()},
                "step_outcomes": {str(k): v for k, v in self.step_outcomes.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.curriculum.load_state_dict(state["curriculum"])
        self.solved = set(state["solved"])
        self.calls = list(state["calls"])
        self.composer.uses, self.composer.skips = Counter(state["uses"]), Counter(state["skips"])
        self.composer._fresh = None  # rebuilt from the restored counters
        self.step_depths = Counter({int(k): v for k, v in state["step_depths"].items()})
        self.step_outcomes = {int(k): list(v) for k, v in state["step_outcomes"].items()}


# ----------------------------------------------------------------------------- offline: rows, `mentor data compose`

def row_of(p: Prompt) -> dict:
    """A JSONL row for a composed prompt; `prompt_of_row` inverts it. `completion` (the exact trace, procedural only)
    makes the file usable for SFT through `mentor.tasks.data.load_rows`."""
    row = {"id": p.id, "prompt": p.text, "answer": p.answer, "verifier": p.verifier, "source": p.source,
           "domain": p.domain, "difficulty": p.difficulty, "depth": depth_of(p),
           "provenance": p.meta.get("composition"), "meta": {k: v for k, v in p.meta.items() if k != "composition"}}
    if "trace" in p.meta:
        row["completion"] = p.meta["trace"]
    return row


def prompt_of_row(row: dict) -> Prompt:
    meta = dict(row.get("meta") or {})
    if row.get("provenance") is not None:
        meta["composition"] = row["provenance"]
    return Prompt(id=row["id"], text=row["prompt"], answer=row["answer"], verifier=row["verifier"],
                  source=row.get("source", ""), domain=row.get("domain", ""), difficulty=row.get("difficulty"), meta=meta)


def read_composed(path: str | Path) -> list[Prompt]:
    return [prompt_of_row(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


def compose_dataset(second: list[Prompt], first: list[Prompt], depth: int, n: int, seed: int,
                    cfg: CompositionConfig) -> tuple[list[Prompt], Counter]:
    """Up to `n` depth-`depth` compositions: the second pool is walked in a seeded random order (cycling), each
    prompt ending one chain; returns the prompts and the skip counts."""
    if depth < 2:
        raise ConfigError(f"compose: depth must be >= 2, got {depth}")
    rng = random.Random(f"compose/{seed}")
    composer, out, seen = Composer(first, cfg), [], set()
    order = list(range(len(second)))
    rng.shuffle(order)
    for i in range(max(n * cfg.tries, len(second))):
        if len(out) >= n:
            break
        q = composer.chain_for(second[order[i % len(order)]], depth, rng)
        if q is not None and q.id not in seen:  # the same chain twice is drawn again, not written twice
            out.append(q)
            seen.add(q.id)
    return out, composer.skips
