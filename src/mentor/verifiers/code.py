"""Code verifier: run a model-written program against tests in a sandbox; reward = fraction of tests passed.

Used as the ``code`` verifier of the training loop (`verify(completion, prompt) -> float`) and directly
(`run_tests(program, tests) -> CodeResult`, `CodeVerifierPool` for many candidates in parallel). It
covers the two test formats of the code-reasoning benchmarks that OPD papers report (HumanEval+/MBPP+,
LiveCodeBench) and of Eurus-RL-Code-style training data:

* **stdin/stdout cases** (competitive programming, LiveCodeBench "stdin" problems): a list of
  ``{"input": str, "output": str}``. The program runs once per case as ``__main__`` with the input on
  stdin; its stdout must equal the expected output after normalising line ends (trailing whitespace of
  each line and trailing blank lines are ignored; optionally numbers compare with a tolerance).
  A non-zero exit is a runtime error even when the output is right, as on judges.
* **function-call asserts** (HumanEval ``def check(candidate): assert ...``, MBPP ``assert f(x) == y``
  lines): an assert program (one string, or a list of assert lines) plus the entry-point name. Each
  ``assert`` evaluation is one test (an assert in a loop counts once per iteration), so the reward is
  graded, not all-or-nothing.

Verdicts the candidate cannot forge
-----------------------------------
A verdict is never something the candidate's process says. It is computed by a trusted process from
data that never enters the sandbox:

* stdin/stdout: the sandbox receives only the input; the parent compares the captured stdout with the
  expected output it kept. Printing "PASS", exiting 0 early, or deleting files changes nothing but the
  output the parent compares.
* function calls: the assert program runs in a separate trusted *harness* process (outside the sandbox,
  as an unprivileged uid when root; see `sandbox/harness.py`). There ``candidate`` / the entry-point name
  is a proxy: each call's arguments go to the sandbox as literal text, the sandbox calls the function in a
  fresh fork and returns ``repr`` of the result, and the harness rebuilds it with a literal-only decoder
  (`sandbox/values.py`). So the comparisons ``==``, ``abs(x - y) < eps`` ... run on plain values in the
  harness: the candidate cannot monkey-patch ``assert`` or builtins there, cannot return an object whose
  ``__eq__`` lies, and never sees the expected values. A per-run nonce would add nothing: the channel is
  trusted because nothing on it is a verdict.

Reasons (`CodeResult.reason` is the first failing test's): ``passed``, ``wrong_answer``,
``runtime_error``, ``timeout``, ``memory``, ``output_limit``, ``syntax_error`` and ``sandbox_error`` (the
infrastructure failed; the test is failed, never passed, and a warning is logged).

Departures from the reference harnesses (HumanEval's ``check(candidate)`` exec'd in one process):
* the assert program must be self-contained: it sees only ``candidate`` and the entry-point name, not
  the helper functions of the candidate's program (HumanEval/32's ``poly`` must be defined in the tests);
* arguments and return values must be plain literals (None, bool, numbers, str, bytes, and
  tuples/lists/sets/dicts of them); a candidate that returns anything else fails that test; in-place
  mutation of an argument is not visible to the test program;
* each call runs in a fresh fork of the loaded program: module state does not carry over between calls;
* if the assert program stops on an exception outside an assert, the run is *aborted*: one failed test
  is added, and failed tests pad the count up to the number of ``assert`` statements in the program, so
  an abort never scores better than failing the asserts it skipped;
* after a test times out, the remaining tests fail without running (`Limits.fail_fast`), as judges do.

Programs run under the interpreter the isolation probe picked (``python -I -S``: standard library only;
HumanEval/MBPP/LiveCodeBench solutions need nothing else). Isolation: see `mentor.verifiers.sandbox`;
`CodeResult.isolation` says which ran ("bwrap", "unshare" or "rlimits").

Data rows (`code_prompt`, `load_code_rows`): ``prompt`` (or ``problem``), ``tests``, ``entry_point``
(function-call tests), ``solution`` (a reference, optional). The `Prompt` carries the tests in
``answer`` as JSON ``{"tests": ..., "entry_point": ...}``; rows that hold that object in an ``answer``
column (as `mentor/data/code_fixture.jsonl` does, with ``"verifier": "code"``) also go through the
generic loader `mentor.tasks.data.load_rows` unchanged, which JSON-encodes it.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import re
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from mentor.types import Prompt
from mentor.verifiers.sandbox import (ChannelClosed, ChannelTimeout, Harness, Limits, Sandbox, SandboxError,
                                      resolve_mode)

log = logging.getLogger(__name__)

REASONS = ("passed", "wrong_answer", "runtime_error", "timeout", "memory", "output_limit", "syntax_error",
           "sandbox_error")
EXIT_MEMORY = 86  # the runner's exit code for MemoryError (sandbox/runner.py)
MAX_PROGRAM_CHARS = 200_000


# ----------------------------------------------------------------------------- test specs

@dataclass(frozen=True)
class StdioTest:
    input: str
    output: str


@dataclass(frozen=True)
class AssertTests:
    program: str  # HumanEval check(candidate) program or MBPP assert lines
    num_asserts: int  # `assert` statements in the program (the floor of the test count when a run aborts)


def parse_tests(tests: Any, where: str = "tests") -> tuple[StdioTest, ...] | AssertTests:
    """Validate a test spec: a list of {input, output} cases, an assert program, or a list of assert lines."""
    if isinstance(tests, str):
        return _assert_tests(tests, where)
    if isinstance(tests, (list, tuple)) and tests and all(isinstance(t, str) for t in tests):
        return _assert_tests("\n".join(tests), where)
    if not isinstance(tests, (list, tuple)) or not tests:
        raise ValueError(f"{where}: expected a non-empty list of {{input, output}} cases or an assert program "
                         f"(string or list of assert lines), got {type(tests).__name__} {str(tests)[:80]!r}")
    cases = []
    for i, case in enumerate(tests):
        if not isinstance(case, dict) or set(case) - {"input", "output"} or not {"input", "output"} <= set(case):
            raise ValueError(f"{where}[{i}]: expected {{'input': str, 'output': str}}, got {str(case)[:80]!r}")
        if not isinstance(case["input"], str) or not isinstance(case["output"], str):
            raise ValueError(f"{where}[{i}]: 'input' and 'output' must be strings")
        cases.append(StdioTest(case["input"], case["output"]))
    return tuple(cases)


def _as_spec(tests: Any) -> tuple[StdioTest, ...] | AssertTests:
    if isinstance(tests, AssertTests):
        return tests
    if isinstance(tests, tuple) and tests and all(isinstance(t, StdioTest) for t in tests):
        return tests
    return parse_tests(tests)


def _assert_tests(program: str, where: str) -> AssertTests:
    try:
        tree = ast.parse(program)
    except SyntaxError as e:
        raise ValueError(f"{where}: the assert program does not parse: {e}") from None
    count = sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
    if count == 0:
        raise ValueError(f"{where}: the assert program has no assert statement")
    return AssertTests(program, count)


# ----------------------------------------------------------------------------- results

@dataclass(frozen=True)
class TestOutcome:
    __test__ = False  # not a pytest test class

    index: int
    passed: bool
    reason: str  # one of REASONS
    detail: str = ""
    time: float = 0.0  # wall seconds of this test inside the sandbox


@dataclass(frozen=True)
class CodeResult:
    passed: bool  # every test passed
    fraction: float  # tests passed / tests
    reason: str  # "passed" or the first failing test's reason
    tests: tuple[TestOutcome, ...]
    isolation: str  # "bwrap", "unshare" or "rlimits": what actually ran
    wall_time: float  # seconds for the whole run, sandbox start and clean-up included
    detail: str = ""

    @property
    def num_passed(self) -> int:
        return sum(t.passed for t in self.tests)


def _result(outcomes: list[TestOutcome], isolation: str, start: float, detail: str = "") -> CodeResult:
    failed = [t for t in outcomes if not t.passed]
    return CodeResult(passed=not failed and bool(outcomes), fraction=(len(outcomes) - len(failed)) / len(outcomes),
                      reason=failed[0].reason if failed else "passed", tests=tuple(outcomes), isolation=isolation,
                      wall_time=time.monotonic() - start, detail=detail or (failed[0].detail if failed else ""))


def _all_fail(n: int, reason: str, detail: str, isolation: str, start: float) -> CodeResult:
    return _result([TestOutcome(i, False, reason, detail) for i in range(max(n, 1))], isolation, start, detail)


# ----------------------------------------------------------------------------- comparison

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def outputs_match(got: str, expected: str, float_tol: float | None = None) -> bool:
    """Judge comparison: lines compared after dropping trailing whitespace per line and trailing blank lines
    (and "\\r"). With `float_tol`, lines are compared token by token and two numeric tokens match when
    |a - b| <= float_tol * max(1, |b|)."""
    a, b = _lines(got), _lines(expected)
    if float_tol is None:
        return a == b
    if len(a) != len(b):
        return False
    for line_a, line_b in zip(a, b):
        tok_a, tok_b = line_a.split(), line_b.split()
        if len(tok_a) != len(tok_b):
            return False
        for x, y in zip(tok_a, tok_b):
            if x == y:
                continue
            if not (_NUMBER.fullmatch(x) and _NUMBER.fullmatch(y)):
                return False
            fx, fy = float(x), float(y)
            if not math.isfinite(fx) or abs(fx - fy) > float_tol * max(1.0, abs(fy)):
                return False
    return True


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


# ----------------------------------------------------------------------------- running

def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _classify_stdio(reply: dict, case: StdioTest, float_tol: float | None) -> tuple[bool, str, str]:
    sig, code = reply.get("signal"), reply.get("exit")
    if reply.get("skipped"):
        return False, "timeout", "not run: an earlier test timed out"
    if reply["timed_out"] or sig == signal.SIGXCPU:
        return False, "timeout", "time limit exceeded"
    if code == EXIT_MEMORY:
        return False, "memory", "memory limit exceeded (MemoryError)"
    if reply["output_capped"]:
        return False, "output_limit", "output limit exceeded"
    if sig is not None:
        return False, "runtime_error", f"killed by {_signal_name(sig)}"
    if code != 0:
        tail = reply.get("stderr", "").strip().splitlines()
        return False, "runtime_error", f"exit status {code}: {tail[-1] if tail else ''}"[:300]
    if outputs_match(reply["stdout"], case.output, float_tol):
        return True, "passed", ""
    return False, "wrong_answer", f"expected {case.output[:60]!r}, got {reply['stdout'][:60]!r}"


def _classify_call(reply: dict) -> dict:
    """The runner's reply to one call, as the harness's proxy expects it."""
    if reply.get("skipped"):
        return {"status": "fail", "reason": "timeout", "error": "not run: an earlier call timed out"}
    if reply["timed_out"] or reply.get("signal") == signal.SIGXCPU:
        return {"status": "fail", "reason": "timeout", "error": "time limit exceeded"}
    if reply["status"] == "ok":
        return {"status": "ok", "value": reply["value"]}
    if reply["status"] == "crashed":
        if reply.get("exit") == EXIT_MEMORY:
            return {"status": "fail", "reason": "memory", "error": "memory limit exceeded (MemoryError)"}
        how = _signal_name(reply["signal"]) if reply.get("signal") is not None else f"exit status {reply.get('exit')}"
        return {"status": "fail", "reason": "runtime_error", "error": f"the call ended without returning ({how})"}
    return {"status": "fail", "reason": "runtime_error", "error": str(reply.get("error") or "error")[:500]}


def run_tests(program: str, tests: Any, *, entry_point: str | None = None, limits: Limits | None = None,
              isolation: str = "auto", python: str | None = None, float_tol: float | None = None,
              total_timeout: float = 120.0) -> CodeResult:
    """Run `program` against `tests` (see `parse_tests`) in a fresh sandbox; never raises for a bad program.

    entry_point: the function the assert program calls (required for assert tests).
    isolation: "auto" (best available) or "bwrap" / "unshare" / "rlimits" (SandboxError if it does not work).
    total_timeout: wall seconds for all tests together; tests not finished by then fail with "timeout"."""
    start = time.monotonic()
    spec = _as_spec(tests)
    if isinstance(spec, AssertTests) and not entry_point:
        raise ValueError("assert tests need an entry_point (the function the tests call)")
    limits = limits or Limits()
    mode, interpreter = resolve_mode(isolation, python)
    n = spec.num_asserts if isinstance(spec, AssertTests) else len(spec)
    if not isinstance(program, str) or not program.strip():
        return _all_fail(n, "syntax_error", "empty program", mode, start)
    if len(program) > MAX_PROGRAM_CHARS:
        return _all_fail(n, "syntax_error", f"program longer than {MAX_PROGRAM_CHARS} characters", mode, start)
    kind = "call" if isinstance(spec, AssertTests) else "run"
    try:
        with Sandbox(program, kind, entry_point=entry_point, limits=limits, isolation=mode,
                     python=interpreter, _probe=True) as box:
            result = _verdicts(box, spec, n, entry_point, interpreter, limits, float_tol, start + total_timeout,
                               mode, start)
    except (SandboxError, OSError) as e:  # the machinery failed, not the program: fail, never pass
        log.warning("code verifier: %s: %s", type(e).__name__, e)
        return _all_fail(n, "sandbox_error", f"{type(e).__name__}: {e}"[:300], mode, start)
    return replace(result, wall_time=time.monotonic() - start)  # clean-up included


def _verdicts(box: Sandbox, spec, n: int, entry_point, interpreter, limits: Limits, float_tol, deadline, mode,
              start) -> CodeResult:
    hello = box.hello
    status = hello.get("status")
    if status == "syntax_error":
        return _all_fail(n, "syntax_error", str(hello.get("error", ""))[:500], mode, start)
    if status == "load_error":
        reason = "memory" if hello.get("memory") else "runtime_error"
        return _all_fail(n, reason, f"program failed at import: {hello.get('error', '')}"[:500], mode, start)
    if status == "start_timeout":
        return _all_fail(n, "timeout", "program did not finish loading in time", mode, start)
    if status != "ready":
        raise SandboxError(f"sandbox did not start ({mode}): {hello}")
    if isinstance(spec, AssertTests):
        return _run_asserts(box, spec, entry_point, interpreter, limits, deadline, mode, start)
    return _run_stdio(box, spec, float_tol, deadline, mode, start)


def _run_stdio(box: Sandbox, cases: tuple[StdioTest, ...], float_tol, deadline, mode, start) -> CodeResult:
    outcomes = []
    for i, case in enumerate(cases):
        if time.monotonic() > deadline:
            outcomes.append(TestOutcome(i, False, "timeout", "total time limit exceeded"))
            continue
        try:
            reply = box.request("run", stdin=case.input)
        except (ChannelTimeout, ChannelClosed) as e:
            outcomes += [TestOutcome(j, False, "timeout" if isinstance(e, ChannelTimeout) else "runtime_error",
                                     "the sandbox stopped answering") for j in range(i, len(cases))]
            break
        passed, reason, detail = _classify_stdio(reply, case, float_tol)
        outcomes.append(TestOutcome(i, passed, reason, detail, reply.get("time", 0.0)))
    return _result(outcomes, mode, start)


def _run_asserts(box: Sandbox, spec: AssertTests, entry_point, interpreter, limits: Limits, deadline, mode,
                 start) -> CodeResult:
    """Relay between the trusted harness (which runs the assert program) and the sandbox (which runs calls)."""
    outcomes: list[TestOutcome] = []
    dead: dict | None = None  # once the sandbox stops answering, every further call fails the same way
    try:
        harness = Harness(spec.program, entry_point, interpreter, limits)
    except (ChannelTimeout, ChannelClosed) as e:
        raise SandboxError(f"the assert harness did not start: {e!r}") from None
    abort = None
    try:
        while True:
            step = min(deadline, time.monotonic() + limits.startup_timeout)  # the test program's own compute
            try:
                msg = harness.read(step)
            except ChannelTimeout:
                abort = ("timeout", "the test program did not finish in time")
                break
            except ChannelClosed as e:
                raise SandboxError(f"the assert harness stopped: {e}") from None
            if msg["op"] == "call":
                t0 = time.monotonic()
                if dead is None and t0 > deadline:
                    dead = {"status": "fail", "reason": "timeout", "error": "total time limit exceeded"}
                if dead is not None:
                    reply = dead
                else:
                    try:
                        reply = _classify_call(box.request("call", args=msg["args"], kwargs=msg["kwargs"]))
                    except (ChannelTimeout, ChannelClosed) as e:
                        reason = "timeout" if isinstance(e, ChannelTimeout) else "runtime_error"
                        reply = dead = {"status": "fail", "reason": reason, "error": "the sandbox stopped answering"}
                try:
                    harness.send(reply, time.monotonic() + limits.startup_timeout)
                except (ChannelTimeout, ChannelClosed) as e:
                    raise SandboxError(f"the assert harness stopped reading: {e!r}") from None
            elif msg["op"] == "assert":
                outcomes.append(TestOutcome(len(outcomes), msg["passed"], msg["reason"], msg["detail"]))
            elif msg["op"] == "done":
                if msg["error_reason"] is not None:
                    reason = msg["error_reason"]
                    abort = ("wrong_answer" if reason == "test_error" else reason,
                             "the test program stopped: " + msg["error_detail"])
                break
            else:
                raise SandboxError(f"unexpected message from the assert harness: {msg}")
    finally:
        harness.close()
    if abort is not None:
        outcomes.append(TestOutcome(len(outcomes), False, abort[0], abort[1]))
        while len(outcomes) < spec.num_asserts:
            outcomes.append(TestOutcome(len(outcomes), False, abort[0], "not run: " + abort[1]))
    if not outcomes:
        raise SandboxError("the assert program evaluated no assert")
    return _result(outcomes, mode, start)


# ----------------------------------------------------------------------------- completions and prompts

_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_program(completion: str) -> str:
    """The program in a model's answer: the last ```python (or ```py, or bare ```) block; an unterminated
    last block counts (a truncated answer); without fences, the whole text."""
    blocks = _FENCE.findall(completion)
    for langs in (("python", "py", "python3"), ("",)):
        chosen = [body for lang, body in blocks if lang.lower() in langs]
        if chosen:
            return chosen[-1]
    return completion


def code_spec(prompt: Prompt) -> tuple[tuple[StdioTest, ...] | AssertTests, str | None]:
    """(tests, entry point) carried by a code prompt's `answer` (JSON; see the module docstring)."""
    if prompt.answer is None:
        raise ValueError(f"prompt {prompt.id!r}: a code prompt needs its tests in `answer`")
    try:
        data = json.loads(prompt.answer)
    except json.JSONDecodeError as e:
        raise ValueError(f"prompt {prompt.id!r}: `answer` is not JSON ({e}); expected "
                         '{"tests": ..., "entry_point": ...}') from None
    entry_point = prompt.meta.get("entry_point")
    if isinstance(data, dict):
        if "tests" not in data:
            raise ValueError(f"prompt {prompt.id!r}: `answer` has no 'tests' key (keys: {sorted(data)})")
        entry_point = data.get("entry_point") or entry_point
        data = data["tests"]
    return parse_tests(data, f"prompt {prompt.id!r} tests"), entry_point


def verify(completion: str, prompt: Prompt) -> float:
    """The `code` verifier of the training loop: fraction of the prompt's tests the completion passes."""
    tests, entry_point = code_spec(prompt)
    return run_tests(extract_program(completion), tests, entry_point=entry_point).fraction


score = verify  # the name `mentor.verifiers.VERIFIERS["code"]` looks for first

_DEFAULT_POOL: CodeVerifierPool | None = None
_DEFAULT_POOL_LOCK = threading.Lock()


def score_batch(completions: Sequence[str], prompts: Sequence[Prompt], workers: int | None = None) -> list[float]:
    """Rewards for a batch, verified in parallel on a process-wide pool (``min(8, CPUs)`` workers unless
    `workers` is given the first time): what a training loop should call instead of `verify` per rollout."""
    global _DEFAULT_POOL
    with _DEFAULT_POOL_LOCK:
        if _DEFAULT_POOL is None:
            _DEFAULT_POOL = CodeVerifierPool(workers or min(8, len(os.sched_getaffinity(0))))
    return _DEFAULT_POOL.verify_batch(completions, prompts)


def code_prompt(row: dict, index: int = 0, source: str = "") -> Prompt:
    """A Prompt from a code row {prompt|problem, tests, entry_point?, solution?, id?}; errors name the row."""
    where = f"{source or 'row'} {index}"
    text = row.get("prompt", row.get("problem"))
    if not isinstance(text, str) or not text:
        raise ValueError(f"{where}: needs a non-empty 'prompt' (or 'problem') string")
    tests, entry_point = row.get("tests"), row.get("entry_point")
    if tests is None and isinstance(row.get("answer"), dict):  # the verifier-ready form of the fixture
        tests, entry_point = row["answer"].get("tests"), row["answer"].get("entry_point", entry_point)
    if tests is None:
        raise ValueError(f"{where}: needs 'tests' (list of {{input, output}} or an assert program), "
                         "or an 'answer' object {tests, entry_point}")
    spec = parse_tests(tests, f"{where}: tests")
    if isinstance(spec, AssertTests) and not (isinstance(entry_point, str) and entry_point.isidentifier()):
        raise ValueError(f"{where}: assert tests need 'entry_point', the function name; got {entry_point!r}")
    return Prompt(id=str(row.get("id", f"{source}:{index}")), text=text,
                  answer=json.dumps({"tests": tests, "entry_point": entry_point}), verifier="code",
                  source=row.get("source", source), domain=row.get("domain", "code"), row=index,
                  meta={"entry_point": entry_point, "solution": row.get("solution")})


def load_code_rows(path: str | Path) -> list[Prompt]:
    """Code prompts from a JSONL file of code rows; errors name the file and line."""
    from ..runs import iter_jsonl_objects

    return [code_prompt(row, int(where.rsplit(":", 1)[1]), source=str(path)) for where, row in iter_jsonl_objects(path)]


def fixture_path() -> Path:
    """The hand-written code fixture shipped with mentor (reference solutions and mutants included)."""
    return Path(__file__).resolve().parent.parent / "data" / "code_fixture.jsonl"


# ----------------------------------------------------------------------------- throughput

class CodeVerifierPool:
    """Verifies many candidates in parallel, at most `workers` sandboxes at a time.

    `submit` returns a Future at once (the queue is unbounded), so a training loop can hand over each
    batch of rollouts as it is decoded, keep sampling, and collect rewards when it needs them. Each job
    holds its own sandbox uid, so concurrent jobs never see or kill each other's processes."""

    def __init__(self, workers: int = 2, *, limits: Limits | None = None, isolation: str = "auto",
                 python: str | None = None, float_tol: float | None = None):
        if workers < 1:
            raise ValueError(f"CodeVerifierPool: workers must be >= 1, got {workers}")
        self.limits = limits or Limits()
        self.isolation, self.python = resolve_mode(isolation, python)  # probe now, not on the first job
        self.float_tol = float_tol
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="code-verifier")

    def submit(self, program: str, tests: Any, entry_point: str | None = None) -> Future:
        return self._executor.submit(run_tests, program, _as_spec(tests), entry_point=entry_point, limits=self.limits,
                                     isolation=self.isolation, python=self.python, float_tol=self.float_tol)

    def submit_completion(self, completion: str, prompt: Prompt) -> Future:
        tests, entry_point = code_spec(prompt)
        return self.submit(extract_program(completion), tests, entry_point)

    def map(self, jobs: Iterable[tuple[str, Any, str | None]]) -> list[CodeResult]:
        """Run (program, tests, entry_point) jobs; results in order."""
        return [f.result() for f in [self.submit(*job) for job in jobs]]

    def verify_batch(self, completions: Sequence[str], prompts: Sequence[Prompt]) -> list[float]:
        if len(completions) != len(prompts):
            raise ValueError(f"verify_batch: {len(completions)} completions for {len(prompts)} prompts")
        return [f.result().fraction for f in [self.submit_completion(c, p) for c, p in zip(completions, prompts)]]

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def with_limits(limits: Limits | None = None, **changes) -> Limits:
    """`Limits` with some fields changed, e.g. ``with_limits(timeout=1.0, memory_mb=128)``."""
    return replace(limits or Limits(), **changes)
