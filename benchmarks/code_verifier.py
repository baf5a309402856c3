"""Code-verifier throughput: verifications per second at 1 and 2 workers, per isolation mode, side by side.

Workloads (each verification = one candidate program against all of its tests, sandbox start and clean-up
included):
    trivial    ``print(int(input()) + 1)`` against 1 stdin/stdout case;
    realistic  the 13 fixture problems (`mentor/data/code_fixture.jsonl`: 6 stdin/stdout with 3-5 cases,
               7 function-call assert programs with 3-7 asserts) with the reference solution and every mutant:
               34 programs (21 of them fail some tests), each verified once.
Modes: every isolation mode that works here ("bwrap", "unshare", "rlimits"). The baseline is an unsandboxed
``subprocess.run([python, "-c", program])`` per stdin/stdout case (what a naive verifier does: no isolation,
no limits), at the same worker counts, for the trivial workload. Configurations interleave (each mode and
the baseline runs its 1-worker and 2-worker batches one after the other) on a shared 2-core machine, so
compare within one run.

    nice -n 10 python benchmarks/code_verifier.py      # writes benchmarks/results/code_verifier.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.verifiers.code import CodeVerifierPool, fixture_path  # noqa: E402
from mentor.verifiers.sandbox import available_modes  # noqa: E402

TRIVIAL = ("print(int(input()) + 1)\n", [{"input": "41\n", "output": "42\n"}], None)


def realistic_jobs() -> list[tuple[str, object, str | None]]:
    jobs = []
    for line in open(fixture_path()):
        row = json.loads(line)
        tests, entry = row["answer"]["tests"], row["answer"]["entry_point"]
        for program in [row["solution"], *row["mutants"]]:
            jobs.append((program, tests, entry))
    return jobs


def run_pool(mode: str, workers: int, jobs: list) -> dict:
    with CodeVerifierPool(workers, isolation=mode) as pool:
        pool.submit(*jobs[0]).result()  # warm: probe done, first sandbox paid
        start = time.perf_counter()
        results = [f.result() for f in [pool.submit(*job) for job in jobs]]
        elapsed = time.perf_counter() - start
    walls = sorted(r.wall_time for r in results)
    return {"verifications": len(jobs), "seconds": round(elapsed, 3), "per_second": round(len(jobs) / elapsed, 2),
            "latency_p50_s": round(statistics.median(walls), 4), "latency_p95_s": round(walls[int(0.95 * (len(walls) - 1))], 4),
            "tests_run": sum(len(r.tests) for r in results), "passed": sum(r.passed for r in results),
            "sandbox_errors": sum(r.reason == "sandbox_error" for r in results)}


def run_baseline(python: str, workers: int, jobs: list) -> dict:
    def one(job):
        program, tests, _ = job
        t0 = time.perf_counter()
        ok = all(subprocess.run([python, "-c", program], input=t["input"], capture_output=True, text=True,
                                timeout=10).stdout.strip() == t["output"].strip() for t in tests)
        return ok, time.perf_counter() - t0

    with ThreadPoolExecutor(workers) as ex:
        start = time.perf_counter()
        results = list(ex.map(one, jobs))
        elapsed = time.perf_counter() - start
    walls = sorted(w for _, w in results)
    return {"verifications": len(jobs), "seconds": round(elapsed, 3), "per_second": round(len(jobs) / elapsed, 2),
            "latency_p50_s": round(statistics.median(walls), 4), "latency_p95_s": round(walls[int(0.95 * (len(walls) - 1))], 4),
            "passed": sum(ok for ok, _ in results)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=24, help="verifications per configuration")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "code_verifier"))
    args = ap.parse_args()
    modes = available_modes()
    real = realistic_jobs()
    workloads = {"trivial": [TRIVIAL] * args.jobs, "realistic": real}
    load_before = os.getloadavg()
    rows = []
    t_start = time.time()
    for workload, jobs in workloads.items():
        for mode in modes:
            for workers in (1, 2):
                r = run_pool(mode, workers, jobs)
                rows.append({"workload": workload, "mode": mode, "workers": workers, **r})
                print(json.dumps(rows[-1]), flush=True)
        if workload == "trivial":
            python = next(iter(modes.values()))
            for workers in (1, 2):
                r = run_baseline(python, workers, jobs)
                rows.append({"workload": workload, "mode": "unsandboxed subprocess", "workers": workers, **r})
                print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "nice -n 10 python benchmarks/code_verifier.py" + (f" --jobs {args.jobs}" if args.jobs != 24 else ""),
            "python": platform.python_version(), "machine": platform.machine(), "cpus": _cpus(),
            "interpreters": modes, "total_seconds": round(time.time() - t_start, 1),
            "load_average_1min": {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(meta, rows))
    print(_markdown(meta, rows))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def _markdown(meta: dict, rows: list[dict]) -> str:
    load = meta["load_average_1min"]
    lines = ["# Code verifier throughput", "", f"`{meta['command']}` — {meta['cpus']} CPUs shared with other jobs "
             f"(1-minute load average {load['before']} before, {load['after']} after), Python {meta['python']} "
             f"(sandboxed programs: {', '.join(sorted(set(meta['interpreters'].values())))}), "
             f"{meta['total_seconds']} s in all.", "",
             "Verifications per second (one candidate against all its tests, sandbox start and clean-up included); "
             "ratio = 2 workers / 1 worker.", "",
             "| workload | isolation | 1 worker /s | 2 workers /s | ratio | p50 latency (1 w) | p95 latency (1 w) |",
             "|---|---|---|---|---|---|---|"]
    by = {(r["workload"], r["mode"], r["workers"]): r for r in rows}
    for workload, mode in dict.fromkeys((r["workload"], r["mode"]) for r in rows):
        one, two = by[(workload, mode, 1)], by[(workload, mode, 2)]
        lines.append(f"| {workload} | {mode} | {one['per_second']:.2f} | {two['per_second']:.2f} | "
                     f"{two['per_second'] / one['per_second']:.2f} | {one['latency_p50_s'] * 1000:.0f} ms | "
                     f"{one['latency_p95_s'] * 1000:.0f} ms |")
    base = {w: by.get(("trivial", "unsandboxed subprocess", w)) for w in (1, 2)}
    if base[1]:
        lines += ["", "Sandbox cost on the trivial program (unsandboxed subprocess rate / sandboxed rate, 1 worker): "
                  + ", ".join(f"{m} {base[1]['per_second'] / by[('trivial', m, 1)]['per_second']:.1f}x"
                              for m in meta["interpreters"]) + "."]
    errors = sum(r.get("sandbox_errors", 0) for r in rows)
    first = by[("realistic", next(iter(meta["interpreters"])), 1)]
    lines += ["", f"Sandbox errors: {errors}. Realistic workload: {first['passed']} of {first['verifications']} programs "
              f"pass (the references; mutants fail by design), {first['tests_run']} tests in all.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
