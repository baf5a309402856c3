"""Unit tests of the code verifier's pure parts: value codec, output comparison, test specs, reply checks,
verdict classification, the assert rewriter. No process is started here (the sandbox is tested in
tests/integration/test_code_sandbox_adversarial.py)."""

from __future__ import annotations

import ast
import json
import math
import signal

import pytest

from mentor.types import Prompt
from mentor.verifiers.code import (AssertTests, StdioTest, TestOutcome, _classify_call, _classify_stdio, _result,
                                   code_prompt, code_spec, extract_program, load_code_rows, outputs_match,
                                   parse_tests, with_limits)
from mentor.verifiers.sandbox import ChannelClosed, Limits, _checked_hello, _checked_reply
from mentor.verifiers.sandbox.harness import _AssertRewriter
from mentor.verifiers.sandbox.values import MAX_DEPTH, decode_value, encode_value

# ----------------------------------------------------------------------------- value codec


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 10 ** 40, 1.5, -0.25, 1e-300, "", "a'b\"c\n", b"\x00\xff", 2 - 3j, -1j,
    (), (1,), [1, [2, (3, "x")]], {1, 2}, frozenset({"a"}), set(), frozenset(), {"k": [1, 2], 3: None, (1, 2): b""},
])
def test_codec_round_trip_is_exact(value):
    back = decode_value(encode_value(value))
    assert back == value and type(back) is type(value)


def test_codec_non_finite_floats():
    assert decode_value(encode_value(math.inf)) == math.inf
    assert decode_value(encode_value(-math.inf)) == -math.inf
    assert math.isnan(decode_value(encode_value(math.nan)))
    assert decode_value(encode_value([math.inf, -math.inf])) == [math.inf, -math.inf]


class _MyInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value,message", [
    (object(), "object is not a plain value"),
    (_MyInt(3), "_MyInt is not a plain value"),  # a subclass could lie in __eq__: refused
    ([1, {2: range(3)}], "range is not a plain value"),
])
def test_encode_refuses_non_plain(value, message):
    with pytest.raises(TypeError, match=message):
        encode_value(value)


def test_encode_refuses_cycles_and_depth():
    cyclic = [1]
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="cycle"):
        encode_value(cyclic)
    deep = []
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        encode_value(deep)


@pytest.mark.parametrize("text", [
    "__import__('os')", "open('x')", "x", "a.b", "lambda: 1", "[i for i in ()]", "{**{}}", "1 + 2", "'a' * 3",
    "set('ab')", "frozenset(1)", "{[1]: 2}", "{[1]}", "-'a'", "(", "1; 2", 3,
])
def test_decode_accepts_only_literals(text):
    with pytest.raises(ValueError):
        decode_value(text)


def test_decode_depth_and_size_caps():
    assert decode_value("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError):
        decode_value("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2))
    with pytest.raises(ValueError, match="characters"):
        decode_value("1" * ((1 << 20) + 1))


# ----------------------------------------------------------------------------- output comparison

@pytest.mark.parametrize("got,expected,tol,same", [
    ("5\n", "5", None, True),  # trailing newline ignored
    ("5  \r\n\n\n", "5\n", None, True),  # trailing spaces, CRLF and blank lines ignored
    ("1 2\n3", "1 2\n3\n", None, True),
    ("1  2", "1 2", None, False),  # inner whitespace counts without a tolerance
    (" 5", "5", None, False),  # leading whitespace counts
    ("5\n\n6", "5\n6", None, False),  # an inner blank line counts
    ("", "", None, True),
    ("0.3333", "0.333333", 1e-3, True),  # |0.3333 - 0.333333| = 3.3e-5 <= 1e-3
    ("0.32", "0.333333", 1e-3, False),  # 0.0133 > 1e-3 * max(1, 0.33)
    ("1000.5", "1000", 1e-3, True),  # relative: 0.5 <= 1e-3 * 1000 = 1
    ("1002", "1000", 1e-3, False),  # 2 > 1
    ("1 2", "1  2", 1e-6, True),  # with a tolerance lines compare token by token
    ("abc 1.0", "abd 1.0", 1e-3, False),  # words must match exactly
    ("nan", "nan", 1e-3, True),  # identical tokens match before any float parsing
    ("inf", "1", 1e-3, False),  # not a decimal number
    ("1 2 3", "1 2", 1e-3, False),
])
def test_outputs_match(got, expected, tol, same):
    assert outputs_match(got, expected, tol) is same


# ----------------------------------------------------------------------------- test specs

def test_parse_tests_formats():
    cases = parse_tests([{"input": "1\n", "output": "2\n"}, {"input": "", "output": ""}])
    assert cases == (StdioTest("1\n", "2\n"), StdioTest("", ""))
    program = "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == i\n    assert True\n"
    assert parse_tests(program) == AssertTests(program, 2)  # two assert statements (the loop runs one 3 times)
    mbpp = parse_tests(["assert f(1) == 2", "assert f(2) == 3"])
    assert mbpp == AssertTests("assert f(1) == 2\nassert f(2) == 3", 2)


@pytest.mark.parametrize("tests,message", [
    ([], "non-empty list"),
    (None, "got NoneType"),
    ([{"input": "1"}], r"tests\[0\]: expected \{'input'"),
    ([{"input": "1", "output": "2", "extra": 0}], r"tests\[0\]"),
    ([{"input": 1, "output": "2"}], r"tests\[0\]: 'input' and 'output' must be strings"),
    ("def check(c):\n    return c(1) == 2\n", "no assert statement"),
    ("assert f(1) ==", "does not parse"),
])
def test_parse_tests_errors_name_the_place(tests, message):
    with pytest.raises(ValueError, match=message):
        parse_tests(tests)


def test_extract_program():
    assert extract_program("print(1)") == "print(1)"  # no fence: the whole text
    text = "Idea.\n```\nprint(0)\n```\nFinal:\n```python\nprint(1)\n```\nand\n```py\nprint(2)\n```\nbye"
    assert extract_program(text) == "print(2)\n"  # the last python-tagged block
    assert extract_program("```text\nhi\n```\n```\nprint(3)\n```") == "print(3)\n"  # else the last bare block
    assert extract_program("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # truncated answer


def test_code_prompt_and_spec():
    row = {"id": "p1", "prompt": "Add.", "tests": ["assert add(1, 2) == 3"], "entry_point": "add", "solution": "x"}
    prompt = code_prompt(row, 4, source="mine")
    assert (prompt.id, prompt.verifier, prompt.domain, prompt.row, prompt.meta["solution"]) == ("p1", "code", "code", 4, "x")
    assert json.loads(prompt.answer) == {"tests": ["assert add(1, 2) == 3"], "entry_point": "add"}
    tests, entry = code_spec(prompt)
    assert tests == AssertTests("assert add(1, 2) == 3", 1) and entry == "add"
    # the verifier-ready form: tests and entry point inside an `answer` object
    same = code_prompt({"problem": "Add.", "answer": {"tests": ["assert add(1, 2) == 3"], "entry_point": "add"}})
    assert code_spec(same) == (tests, "add")
    # a bare list in `answer` with the entry point in meta
    bare = Prompt(id="b", text="t", answer=json.dumps([{"input": "", "output": "1"}]), verifier="code")
    assert code_spec(bare) == ((StdioTest("", "1"),), None)


@pytest.mark.parametrize("row,message", [
    ({"tests": [{"input": "", "output": ""}]}, "row 0: needs a non-empty 'prompt'"),
    ({"prompt": "p"}, "row 0: needs 'tests'"),
    ({"prompt": "p", "tests": "assert f(1)"}, "need 'entry_point'"),
    ({"prompt": "p", "tests": "assert f(1)", "entry_point": "not a name"}, "need 'entry_point'"),
    ({"prompt": "p", "tests": [{"in": ""}]}, r"row 0: tests\[0\]"),
])
def test_code_prompt_errors(row, message):
    with pytest.raises(ValueError, match=message):
        code_prompt(row)


def test_code_spec_errors():
    for answer, message in [(None, "needs its tests in `answer`"), ("not json", "not JSON"),
                            ('{"entry_point": "f"}', "no 'tests' key")]:
        with pytest.raises(ValueError, match=message):
            code_spec(Prompt(id="x", text="t", answer=answer, verifier="code"))


def test_load_code_rows_names_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    good = json.dumps({"prompt": "p", "tests": [{"input": "", "output": "1"}]})
    path.write_text(good + "\n\n" + good + "\n{broken\n")
    with pytest.raises(ValueError, match=r"rows.jsonl:4: invalid JSON"):
        load_code_rows(path)
    path.write_text(good + "\n" + json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl 2: needs 'tests'"):
        load_code_rows(path)


# ----------------------------------------------------------------------------- verdicts

def _run_reply(**kw):
    reply = {"id": 1, "timed_out": False, "exit": 0, "signal": None, "stdout": "5\n", "output_capped": False,
             "stderr": "", "time": 0.01}
    reply.update(kw)
    return reply


@pytest.mark.parametrize("changes,verdict", [
    ({}, (True, "passed")),
    ({"stdout": "6\n"}, (False, "wrong_answer")),
    ({"timed_out": True}, (False, "timeout")),
    ({"exit": None, "signal": int(signal.SIGXCPU)}, (False, "timeout")),  # the CPU-time limit
    ({"exit": 86}, (False, "memory")),
    ({"exit": 1, "output_capped": True}, (False, "output_limit")),  # EFBIG past the cap, then exit 1
    ({"exit": None, "signal": int(signal.SIGSEGV)}, (False, "runtime_error")),
    ({"exit": 2, "stderr": "Traceback\nValueError: x\n"}, (False, "runtime_error")),  # right output, bad exit
    ({"skipped": True, "timed_out": True}, (False, "timeout")),
])
def test_classify_stdio(changes, verdict):
    passed, reason, _ = _classify_stdio(_run_reply(**changes), StdioTest("2 3", "5"), None)
    assert (passed, reason) == verdict


def test_classify_stdio_details():
    assert _classify_stdio(_run_reply(exit=2, stderr="Traceback\nValueError: x\n"), StdioTest("", "5"), None)[2] \
        == "exit status 2: ValueError: x"
    assert "SIGSEGV" in _classify_stdio(_run_reply(exit=None, signal=11), StdioTest("", "5"), None)[2]


@pytest.mark.parametrize("reply,expected", [
    ({"status": "ok", "value": "3", "timed_out": False}, {"status": "ok", "value": "3"}),
    ({"status": "error", "error": "ValueError: x", "timed_out": False},
     {"status": "fail", "reason": "runtime_error", "error": "ValueError: x"}),
    ({"status": "crashed", "exit": 86, "signal": None, "timed_out": False},
     {"status": "fail", "reason": "memory", "error": "memory limit exceeded (MemoryError)"}),
    ({"status": "crashed", "exit": 0, "signal": None, "timed_out": False},
     {"status": "fail", "reason": "runtime_error", "error": "the call ended without returning (exit status 0)"}),
    ({"status": "crashed", "exit": None, "signal": 9, "timed_out": False},
     {"status": "fail", "reason": "runtime_error", "error": "the call ended without returning (SIGKILL)"}),
    ({"status": "crashed", "exit": None, "signal": None, "timed_out": True},
     {"status": "fail", "reason": "timeout", "error": "time limit exceeded"}),
])
def test_classify_call(reply, expected):
    assert _classify_call(reply) == expected


def test_result_fraction_and_first_reason():
    outcomes = [TestOutcome(0, True, "passed"), TestOutcome(1, False, "timeout", "slow"),
                TestOutcome(2, False, "wrong_answer"), TestOutcome(3, True, "passed")]
    res = _result(outcomes, "bwrap", 0.0)
    assert (res.passed, res.fraction, res.reason, res.detail, res.num_passed) == (False, 0.5, "timeout", "slow", 2)
    ok = _result([TestOutcome(0, True, "passed")], "unshare", 0.0)
    assert (ok.passed, ok.fraction, ok.reason) == (True, 1.0, "passed")


# ----------------------------------------------------------------------------- the channel

@pytest.mark.parametrize("line,op", [
    (b"not json", "run"),
    (b"[1, 2]", "run"),
    (b'{"id": 2, "timed_out": false}', "run"),  # out of order
    (json.dumps(_run_reply(stdout=5)).encode(), "run"),  # wrong type
    (json.dumps(_run_reply(timed_out=1)).encode(), "run"),  # 1 is not a bool
    (b'{"id": 1, "timed_out": false, "exit": 0, "signal": null, "status": "ok", "time": 0}', "call"),  # no value
    (b'{"id": 1, "status": "ok", "value": "5"}', "call"),  # missing fields
])
def test_checked_reply_refuses_malformed(line, op):
    with pytest.raises(ChannelClosed):
        _checked_reply(line, op, 1)


def test_checked_reply_accepts_well_formed():
    assert _checked_reply(json.dumps(_run_reply()).encode(), "run", 1)["stdout"] == "5\n"
    call = {"id": 3, "timed_out": False, "exit": 0, "signal": None, "status": "ok", "value": "(1, 2)", "time": 0.1}
    assert _checked_reply(json.dumps(call).encode(), "call", 3)["value"] == "(1, 2)"
    assert _checked_hello(b'{"status": "ready"}') == {"status": "ready"}
    for bad in (b"", b"[]", b'{"status": 1}'):
        with pytest.raises(ChannelClosed):
            _checked_hello(bad)


# ----------------------------------------------------------------------------- the assert rewriter

def test_assert_rewriter_records_every_evaluation():
    program = ("def check(candidate):\n    assert candidate(1) == 2\n    for i in range(3):\n"
               "        assert candidate(i) == i + 1, 'message is dropped'\n    assert candidate(5) == 0\n")
    rewriter = _AssertRewriter()
    tree = ast.fix_missing_locations(rewriter.visit(ast.parse(program)))
    seen = []
    scope = {"__mentor_assert__": lambda cond, line: seen.append((line, bool(cond())))}
    exec(compile(tree, "tests.py", "exec"), scope)
    scope["check"](lambda x: x + 1)
    # 3 assert statements; 1 + 3 + 1 = 5 evaluations; the last is false (6 != 0) and does not stop anything
    assert rewriter.count == 3
    assert seen == [(2, True), (4, True), (4, True), (4, True), (5, False)]


def test_limits_validation():
    assert with_limits(timeout=0.5).timeout == 0.5
    for kwargs, message in [({"timeout": 0}, "timeout must be > 0"), ({"memory_mb": 0}, "memory_mb"),
                            ({"output_limit": 1.5}, "output_limit"), ({"max_files": 8}, "max_files must be >= 16")]:
        with pytest.raises(ValueError, match=message):
            Limits(**kwargs)
