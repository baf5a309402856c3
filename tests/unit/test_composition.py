"""Composition-RL operator, literal rules, curriculum, transform state and the LLM-rewrite guard (specs/composition.md
§4.1). Every expected value is derived by hand in the comment next to it."""

from __future__ import annotations

import http.server
import json
import random
import threading
from dataclasses import dataclass

import pytest
import sympy

from mentor.config import ConfigError
from mentor.tasks import get_task, make_prompts
from mentor.tasks.composition import (ComposeConfig, CompositionTransform, RewriteConfig, Skip, answer_value,
                                      compose_chain, find_literals, fresh_symbols, pick_literal, prompt_of_row,
                                      recompute_procedural_answer, recover_last, rewrite, rewrite_guard, row_of)
from mentor.tasks.curriculum import CurriculumConfig, DepthCurriculum
from mentor.types import Prompt
from mentor.verifiers import VERIFIERS

Q1 = Prompt(id="q1", text="What is 3+4?", answer="7", verifier="math")
Q2 = Prompt(id="q2", text="A box holds 5 rows of 6 apples. How many apples?", answer="30", verifier="math")


# ----------------------------------------------------------------------------- the operator on text rows

def test_basic_pair_text_answer_and_exact_check():
    c = compose_chain([Q1, Q2])
    # literal: integers {5, 6}, smallest 5; d = 5 - 7 = -2 -> "Y is 2 less than X."; answer = q2's
    assert c.text == ("Problem 1: What is 3+4?\nLet X be the answer to Problem 1.\nY is 2 less than X.\n"
                      "Problem 2: A box holds Y rows of 6 apples. How many apples?\nGive the final answer to Problem 2.")
    assert (c.answer, c.verifier) == ("30", "math")
    link = c.meta["composition"]["links"][0]
    assert (link["v1"], link["literal"], link["d"], link["span"]) == ("7", "5", "-2", [12, 13])
    # exact check: 7 + (-2) - 5 = 0
    assert sympy.Integer(7) + sympy.sympify(link["d"]) - sympy.Integer(5) == 0
    assert recover_last(c) == Q2.text  # invariance: Y -> 5, prefix removed


def test_values_are_exact():
    assert answer_value("\\frac{7}{2}") == sympy.Rational(7, 2)
    v = answer_value("0.5")
    assert v == sympy.Rational(1, 2) and isinstance(v, sympy.Rational)  # not a float
    assert answer_value("1,000") == 1000 and answer_value("-3") == -3 and answer_value("3:4") == 3
    assert answer_value("\\{4, 1, 3\\}") == 1  # a set: min by default
    assert answer_value("\\{4, 1, 3\\}", multi_value="max") == 4
    assert answer_value("(1, 2]", interval="upper") == 2 and answer_value("[5, 9)", interval="lower") == 5


@pytest.mark.parametrize("gt,reason", [("x^2+1", "non_numeric_answer"), ("(1, 2]", "non_numeric_answer"),
                                       ("\\sqrt{2}", "irrational_answer")])
def test_skips(gt, reason):
    assert answer_value(gt).reason == reason
    out = compose_chain([Prompt(id="a", text="Solve it.", answer=gt, verifier="math"), Q2])
    assert isinstance(out, Skip) and out.reason == reason


def test_rational_answer_gives_rational_difference():
    p1 = Prompt(id="a", text="Halve 7.", answer="\\frac{7}{2}", verifier="math")
    p2 = Prompt(id="b", text="Buy 4 pens at 9 cents.", answer="36", verifier="math")
    c = compose_chain([p1, p2])
    # v1 = 7/2, literal 4 (smallest integer), d = 4 - 7/2 = 1/2
    assert "Y is 1/2 more than X." in c.text
    assert c.meta["composition"]["links"][0]["d"] == "1/2"


def test_literal_rules():
    text = "Let x_1 = 3 and y = 12.\n(2) Find x_1+y."
    lits = find_literals(text)
    # subscripts _1 and the line-initial marker (2) are excluded; 12. is an integer followed by a full stop
    assert [str(lt.value) for lt in lits] == ["3", "12"]
    assert pick_literal(lits).value == 3
    big = find_literals("costs 1,000 dollars")
    assert [(b.start, b.end, b.value) for b in big] == [(6, 11, 1000)]
    mixed = find_literals("1. CO2 has 2x and 3.5 kg, \\frac{1}{2} and 3/4 items")
    # 1. (marker), CO2 (identifier), 2x (glued to a letter) are excluded
    assert [(m.kind, m.value) for m in mixed] == [("decimal", sympy.Rational(7, 2)), ("fraction", sympy.Rational(1, 2)),
                                                  ("fraction", sympy.Rational(3, 4))]
    assert pick_literal(mixed).value == sympy.Rational(1, 2)  # fraction > decimal, then the smaller fraction
    c = compose_chain([Q1, Prompt(id="b", text="A car costs 1,000 dollars.", answer="1000", verifier="math")])
    assert "A car costs Y dollars." in c.text and "Y is 993 more than X." in c.text  # 1000 - 7


def test_fresh_symbols():
    p1 = Prompt(id="a", text="If X = 2 and Y = 3, what is X+Y?", answer="5", verifier="math")
    assert fresh_symbols([p1.text, Q2.text], 2) == ["Z", "W"]
    c = compose_chain([p1, Q2])
    assert "Let Z be the answer to Problem 1.\nW is 0 more than Z." in c.text  # 5 - 5 = 0


def test_depth_three_text():
    p3 = Prompt(id="q3", text="Add 40 to 11 and subtract 40.", answer="11", verifier="math")
    c = compose_chain([Q1, Q2, p3])
    # link 1: 5 - 7 = -2; link 2: v1 = 30, literal 11 (smallest) at its first occurrence, d = 11 - 30 = -19
    assert c.answer == "11" and c.meta["composition"]["depth"] == 3
    assert c.text.count("Problem 1: ") == c.text.count("Problem 2: ") == c.text.count("Problem 3: ") == 1
    assert "Y is 2 less than X." in c.text and "W is 19 less than Z." in c.text
    assert "Problem 3: Add 40 to W and subtract 40.\nGive the final answer to Problem 3." in c.text
    assert recover_last(c) == p3.text


def test_chat_prompt_is_refused_with_a_clear_error():
    chat = Prompt(id="m", messages=({"role": "user", "content": "hi"},), answer="1")
    with pytest.raises(ValueError, match="'m' needs a text"):
        compose_chain([Q1, chat])


# ----------------------------------------------------------------------------- procedural families

INT_ANSWER = {"add": {"digits": 2}, "mul": {"digits": 2}, "mod": {}, "expr": {"ops": 2}, "chain": {"steps": 3},
              "count": {"length": 6}}
SUBSTITUTABLE = {"add": {"digits": 2}, "mul": {"digits": 2}, "mod": {}, "chain": {"steps": 3}, "sort": {"length": 3}}


@pytest.mark.parametrize("first", sorted(INT_ANSWER))
@pytest.mark.parametrize("second", sorted(SUBSTITUTABLE))
def test_every_family_answer_solver_and_trace(first, second):
    p1 = make_prompts(first, 1, 3, **INT_ANSWER[first])[0]
    p2 = make_prompts(second, 1, 4, **SUBSTITUTABLE[second])[0]
    c = compose_chain([p1, p2])
    assert c.answer == p2.answer and c.verifier == "task" and c.meta["task"] == second
    assert recompute_procedural_answer(c) == p2.answer  # the task's solver on Y = v1 + d
    assert recover_last(c) == p2.text
    trace = c.meta["trace"]
    assert trace.count(":") == 1 and trace.endswith(":" + p2.answer)
    assert VERIFIERS["task"](trace, c) == 1.0 and VERIFIERS["task"](trace[:-1] + "x", c) == 0.0


def test_procedural_pair_by_hand():
    add = get_task("add", digits=3)
    p1 = Prompt(id="a", text="368+543=", answer="911", verifier="task",
                meta={"task": "add", "task_args": add.args, "params": {"a": 368, "b": 543},
                      "trace": add.problem(a=368, b=543).trace})
    p2 = Prompt(id="b", text="514+437=", answer="951", verifier="task",
                meta={"task": "add", "task_args": add.args, "params": {"a": 514, "b": 437},
                      "trace": add.problem(a=514, b=437).trace})
    c = compose_chain([p1, p2], ComposeConfig(style="compact"))
    # smallest parameter b = 437 -> Y; d = 437 - 911 = -474
    assert c.text == "X=368+543;Y=X-474;514+Y="
    # X - 474 per digit: 1-4-0 borrows (11-4=7), 1-7-1 borrows (11-8=3), 9-4-1=4 -> 437
    assert c.meta["trace"] == ("8+3+0=11,6+4+1=11,3+5+1=09>X=911;1-4-0=17,1-7-1=13,9-4-1=04>Y=437;"
                               "4+7+0=11,1+3+1=05,5+4+0=09:951")
    assert c.meta["composition"]["links"][0]["param"] == "b"


def test_procedural_skips():
    s = make_prompts("sort", 1, 0, length=3)[0]
    a = make_prompts("add", 1, 0, digits=2)[0]
    assert compose_chain([s, a]).reason == "non_numeric_answer"  # a list answer
    assert compose_chain([a, make_prompts("count", 1, 0)[0]]).reason == "no_literal"  # no integer parameter
    assert compose_chain([Q1, Q2], ComposeConfig(style="compact")).reason == "compact_needs_procedural"


def test_provenance_round_trips():
    c = compose_chain(make_prompts("add", 3, 0, digits=2))
    row = json.loads(json.dumps(row_of(c)))
    back = prompt_of_row(row)
    assert back == c and back.meta == c.meta and back.text == c.text
    assert row["completion"] == c.meta["trace"] and row["depth"] == 3


# ----------------------------------------------------------------------------- curriculum

def test_schedule_curriculum():
    cur = DepthCurriculum(CurriculumConfig(kind="schedule", schedule=[[0, 1], [10, 2], [20, 3]], p_current=1.0))
    assert [cur.max_depth(s) for s in (0, 9, 10, 19, 20, 500)] == [1, 1, 2, 2, 3, 3]
    rng = random.Random(0)
    assert {cur.sample_depth(25, rng) for _ in range(20)} == {3}
    mixed = DepthCurriculum(CurriculumConfig(schedule=[[0, 3]], p_current=0.0))
    assert {mixed.sample_depth(0, rng) for _ in range(200)} == {1, 2}  # uniform below the maximum


def test_pass_rate_curriculum_transition():
    cur = DepthCurriculum(CurriculumConfig(kind="pass_rate", start_depth=2, max_depth=3, theta_up=0.7, window=20,
                                           min_steps=50))
    # steps 0..49 at pass rate 0.2, then 0.8. The 20-step mean with k steps of 0.8 is (0.2(20-k) + 0.8k)/20 = 0.2 +
    # 0.03k >= 0.7 first at k = 17 (0.71; k = 16 gives 0.68), i.e. after step 66 (steps 50..66).
    for step in range(100):
        before = cur.max_depth(step)
        cur.observe(step, {2: (2 if step < 50 else 8, 10), 1: (10, 10)} if before == 2 else {3: (0, 10)})
        if step == 65:
            assert cur.max_depth(step + 1) == 2
    assert cur.raises == [[66, 3]]
    assert cur.max_depth(100) == 3 and cur.entered == 67 and cur.window == [0.0] * 20  # depth 3 fails: no raise


def test_pass_rate_needs_min_steps():
    cur = DepthCurriculum(CurriculumConfig(kind="pass_rate", window=5, min_steps=30))
    for step in range(29):
        cur.observe(step, {2: (10, 10)})
    assert cur.depth == 2  # 29 steps spent < 30
    cur.observe(29, {2: (10, 10)})
    assert cur.depth == 3 and cur.raises == [[29, 3]]


def test_curriculum_config_errors():
    with pytest.raises(ConfigError, match="choose one of"):
        CurriculumConfig(kind="linear")
    with pytest.raises(ConfigError, match=r"schedule\[1\]"):
        CurriculumConfig(schedule=[[5, 2], [5, 3]])


# ----------------------------------------------------------------------------- the transform

@dataclass
class G:
    prompt: Prompt
    correct: list[bool]


def test_transform_composes_with_last_problem_selected():
    pool = make_prompts("add", 20, 0, digits=2)
    t = CompositionTransform(pool, seed=1, args={"curriculum": {"schedule": [[0, 2]], "p_current": 1.0}})
    out = t.apply(pool[:4], step=0)
    for p, q in zip(pool[:4], out):
        prov = q.meta["composition"]
        assert prov["depth"] == 2 and prov["chain"][-1]["id"] == p.id and q.answer == p.answer
        assert recompute_procedural_answer(q) == p.answer
    t.update([G(q, [True, False, False, False]) for q in out], step=0)
    m = t.metrics()
    # 4 composed prompts x 4 rollouts, 4 correct -> pass rate 0.25 at depth 2; nothing at depth 1 -> none solved
    assert m["composition/fraction"] == 1.0 and m["composition/depth2"] == 1.0
    assert m["composition/pass_rate/depth2"] == 0.25 and m["composition/solved_fraction"] == 0.0
    assert m["composition/max_depth"] == 2.0


def test_solved_seeds_only():
    pool = make_prompts("add", 10, 0, digits=2)
    t = CompositionTransform(pool, seed=0, args={"seeds": "solved", "solved_min_samples": 4,
                                                 "curriculum": {"schedule": [[0, 2]], "p_current": 1.0}})
    assert t.apply(pool[:2], 0) == pool[:2]  # nothing solved yet: stays original
    assert t.metrics()["composition/skip/no_seed"] == 2.0
    # pool[5] solved with 4/4; pool[6] 4/4 but only 3 samples (< 4) does not count; pool[7] 3/4 unsolved
    t.update([G(pool[5], [True] * 4), G(pool[6], [True] * 3), G(pool[7], [True, True, True, False])], 0)
    assert t.solved == {pool[5].id} and t.metrics()["composition/solved_fraction"] == 0.1
    out = t.apply(pool[:3], 1)
    assert all(q.meta["composition"]["chain"][0]["id"] == pool[5].id for q in out)
    t.update([G(pool[5], [True, False, True, True])], 1)  # latest observation not solved: removed
    assert t.solved == set()


def test_transform_resume_is_identical():
    pool = make_prompts("add", 30, 0, digits=2)
    args = {"curriculum": {"kind": "pass_rate", "window": 2, "min_steps": 2, "theta_up": 0.5, "max_depth": 3}}
    a = CompositionTransform(pool, seed=7, args=args)
    for step in range(3):
        a.update([G(q, [True] * 8) for q in a.apply(pool[step:step + 6], step)], step)
    state = json.loads(json.dumps(a.state_dict()))
    b = CompositionTransform(pool, seed=7, args=args)
    b.load_state_dict(state)
    for step in range(3, 6):
        qa, qb = a.apply(pool[step:step + 6], step), b.apply(pool[step:step + 6], step)
        assert [q.text for q in qa] == [q.text for q in qb]
        a.update([G(q, [True] * 8) for q in qa], step)
        b.update([G(q, [True] * 8) for q in qb], step)
    assert a.state_dict() == b.state_dict() and a.metrics() == b.metrics()
    assert a.curriculum.raises and a.curriculum.raises[0] == [1, 3]  # all correct; 2 steps in window, >= 2 spent


def test_transform_args_errors():
    pool = make_prompts("add", 3, 0)
    with pytest.raises(ConfigError, match="rl.transform_args"):
        CompositionTransform(pool, args={"depth": 3})
    with pytest.raises(ConfigError, match="seeds=solved"):
        CompositionTransform(pool, args={"seeds": "solved", "first": {"task": "mod", "n": 5}})
    with pytest.raises(ConfigError, match="style"):
        CompositionTransform(pool, args={"compose": {"style": "prose"}})


def test_cross_domain_first_pool():
    pool = make_prompts("add", 5, 0, digits=2)
    t = CompositionTransform(pool, args={"first": {"task": "mod", "n": 10}, "curriculum": {"p_current": 1.0}})
    out = t.apply(pool, 0)
    assert all(q.meta["composition"]["chain"][0]["id"].startswith("mod-") for q in out)
    assert all(q.answer == p.answer and q.meta["task"] == "add" for p, q in zip(pool, out))


# ----------------------------------------------------------------------------- LLM rewrite (local server)

class _Server:
    """A bounded local OpenAI-compatible endpoint that replays canned bodies, one per request."""

    def __init__(self, bodies: list[tuple[int, str]]):
        self.bodies, self.requests = list(bodies), []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                code, body = outer.bodies.pop(0)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
        n = len(bodies)
        self.thread = threading.Thread(target=lambda: [self.httpd.handle_request() for _ in range(n)], daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def close(self):
        self.thread.join(timeout=5)
        self.httpd.server_close()


def _reply(text: str) -> tuple[int, str]:
    return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]})


GOOD = ("What is 3+4? Call the result X, and let Y be 2 less than X. A box holds Y rows of 6 apples. "
        "How many apples are there?")


def test_rewrite_accepts_a_faithful_rewrite():
    c = compose_chain([Q1, Q2])
    srv = _Server([_reply(GOOD)])
    out, status = rewrite(c, RewriteConfig(endpoint=srv.url, timeout_s=5))
    srv.close()
    assert status == "accepted" and out.text == GOOD and out.meta["composition"]["exact_text"] == c.text
    req = srv.requests[0]
    assert (req["temperature"], req["top_p"], req["max_tokens"], req["seed"]) == (0.1, 0.7, 4096, 42)


def test_rewrite_guard_rejects_and_keeps_exact_text():
    c = compose_chain([Q1, Q2])
    dropped = GOOD.replace("2 less", "two less")  # drops the number 2
    assert rewrite_guard(c, dropped) == "dropped number 2"
    assert rewrite_guard(c, GOOD.replace("Y rows", "5 rows").replace("let Y", "let W")) == "dropped symbol Y"
    srv = _Server([(200, "not json {"), _reply(dropped)])  # malformed, then number-dropping: 2 tries
    out, status = rewrite(c, RewriteConfig(endpoint=srv.url, timeout_s=5))
    srv.close()
    assert status == "rejected: dropped number 2" and out.text == c.text
    assert out.meta["composition"]["rewrite"] == status
    srv = _Server([(500, "{}"), _reply("")])  # server error, then empty content
    out, status = rewrite(c, RewriteConfig(endpoint=srv.url, timeout_s=5))
    srv.close()
    assert status == "error: ValueError" and out.text == c.text


def test_seed_draws_use_each_prompt_max_uses_times_per_epoch_and_skip_without_seeds():
    from collections import Counter

    from mentor.tasks.composition import CompositionConfig, Composer

    first = make_prompts("add", 4, 0, digits=2)
    last = make_prompts("add", 1, 1, digits=2)[0]
    comp = Composer(first, CompositionConfig(max_uses=2))
    rng = random.Random(0)
    seeds = [comp.chain_for(last, 2, rng).meta["composition"]["chain"][0]["id"] for _ in range(8)]
    # 4 seeds x max_uses 2 = 8 draws in one epoch: every first-pool prompt serves exactly twice
    assert Counter(seeds) == {p.id: 2 for p in first}
    nxt = comp.chain_for(last, 2, rng)  # the epoch is over: counters reset and any prompt may serve again
    assert nxt is not None and comp.uses == Counter({nxt.meta["composition"]["chain"][0]["id"]: 1})
    # a chain never uses its own last prompt as a seed; too few other prompts -> skipped as no_seed
    pair = Composer(first[:2], CompositionConfig())
    assert all(pair.chain_for(first[0], 2, rng).meta["composition"]["chain"][0]["id"] == first[1].id for _ in range(5))
    assert pair.chain_for(first[0], 3, rng) is None and pair.skips["no_seed"] == 1
