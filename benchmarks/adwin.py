"""Full-rollout OPD vs fixed-prefix vs progressive-prefix vs ADWIN on a long-horizon task (specs/adwin.md §4.2).

    nice -n 10 python benchmarks/adwin.py --seeds 0 1 2 --jobs 2            # CPU, this machine
    python benchmarks/adwin.py --device cuda --jobs 12 --seeds 0 1 2         # one GPU, runs in parallel

Setting (long front-loaded reasoning): the labelled `chain` task (`--chain-steps` operations, a scratchpad of ~9
tokens per operation, so ~110 tokens at 12 steps; an early slip propagates to the answer). The teacher is a model
trained by SFT to high accuracy (`--teacher-model`, `--teacher-steps`); the student a model after a short SFT
(`--student-model`, `--student-steps`; same size by default: the papers' same-size setting with a weaker student).
Both are cached under `--cache`, keyed by their settings. Every arm is an ordinary `mentor train` run
(algo=opd, `controllers: [adwin]` with `mode` full / fixed / progressive / adwin) from the same student and teacher,
same seeds, same data order and learning rate; they differ only in the rollout horizon.

Metric: held-out greedy accuracy (full-length completions; evaluation cost excluded) against cumulative training
FLOPs (`cost/flops`: student sampling, teacher prefill, learner, ADWIN's probes and audits — `mentor.cost`).
**Cost-to-target** per seed = cumulative FLOPs at the first evaluation where accuracy ≥ the full-rollout arm's final
accuracy (mean of its last 3 evaluations) minus 1 point; the table reports the ratio cost(full)/cost(arm) (> 1: the
arm is cheaper) and each arm's final accuracy. Finished runs (with `final/`) are reused when the command is rerun.
Results: `benchmarks/results/adwin.{json,md,png}` (`--name` changes the stem).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mentor.runs import atomic_write_text, read_jsonl  # noqa: E402

ARMS = ("full", "fixed", "progressive", "adwin")


def task_args(a) -> list[str]:
    return ["data.task=chain", f"data.task_args={{steps: {a.chain_steps}, labels: true}}",
            f"sampling.max_new_tokens={a.h_max}", "data.num_train=20000", f"data.num_eval={a.eval_size}"]


def common(a, threads: int) -> list[str]:
    return [f"run.device={a.device}", f"run.threads={threads}", "run.progress=false", "run.save_every=0"]


def mentor_train(overrides: list[str], log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if "run.device=cpu" in overrides:
        env["OMP_NUM_THREADS"] = next(o.split("=")[1] for o in overrides if o.startswith("run.threads="))
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "mentor.cli", "train", *overrides], check=True, stdout=f,
                       stderr=subprocess.STDOUT, env=env)


def cached_model(a, name: str, overrides: list[str]) -> Path:
    """SFT a model once per distinct setting; returns its final directory."""
    key = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(a.cache) / f"{name}-{key}"
    if not (out / "final").exists():
        t0 = time.perf_counter()
        print(f"[bench] training the {name} → {out}", flush=True)
        mentor_train([*overrides, f"run.out_dir={out}"] + (["--resume"] if (out / "ckpt").exists() else []),
                     Path(str(out) + ".log"))
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return out / "final"


def arm_overrides(a, arm: str, seed: int, teacher: Path, student: Path, out: Path) -> list[str]:
    adwin = {"mode": arm, "h0": a.h0, "h_min": a.h_min, "probe_every": a.probe_every, "probe_frac": a.probe_frac,
             "sketch": a.sketch, "audit_candidates": True}
    if arm != "adwin":
        adwin = {"mode": arm, "h0": a.h0}
    args = ", ".join(f"{k}: {v}" for k, v in adwin.items())
    return ["algo=opd", f"model.path={student}", f"distill.teacher={teacher}", *task_args(a),
            f"optim.lr={a.lr}", "optim.warmup_steps=10", "optim.schedule=constant", f"optim.batch_size={a.batch}",
            f"optim.micro_batch_size={a.batch}", f"run.seed={seed}", f"run.steps={a.steps}",
            f"eval.every={a.eval_every}", f"eval.size={a.eval_size}", f"eval.max_new_tokens={a.h_max}",
            "controllers=[adwin]", f"controller_args={{adwin: {{{args}}}}}", *common(a, a.threads),
            f"run.out_dir={out}"]


def collect(run_dir: Path) -> dict:
    recs = read_jsonl(run_dir / "metrics.jsonl")
    flops = {0: 0.0}
    tokens = {0: 0}
    for r in recs:
        if "cost/flops" in r:
            flops[r["step"]], tokens[r["step"]] = r["cost/flops"], r["cost/tokens"]
    evals = [(r["step"], r["eval/accuracy"]) for r in recs if "eval/accuracy" in r]
    horizon = [(r["step"], r["adwin/horizon"]) for r in recs if "adwin/horizon" in r]
    audits = [{"step": r["step"], "a": r["adwin/alignment"], "ema": r["adwin/ema"], "mass": r["adwin/mass"],
               "H": r["adwin/audited_horizon"],
               "candidates": {k.rsplit("_", 1)[1]: v for k, v in r.items() if k.startswith("adwin/alignment_at_")}}
              for r in recs if "adwin/alignment" in r]
    wall = sum(r.get("time/step", 0.0) for r in recs)
    return {"evals": evals, "flops": flops, "tokens": tokens, "horizon": horizon, "audits": audits, "wall": wall}


def final_accuracy(evals) -> float:
    return float(np.mean([acc for _, acc in evals[-3:]]))


def summarise(results: dict, seeds: list[int]) -> dict:
    rows = {}
    for arm in ARMS:
        per_seed = []
        for seed in seeds:
            base, r = results.get(f"full/{seed}"), results.get(f"{arm}/{seed}")
            if base is None or r is None:
                continue
            target = final_accuracy(base["evals"]) - 0.01
            step = next((s for s, acc in r["evals"] if acc >= target), None)
            base_step = next(s for s, acc in base["evals"] if acc >= target)
            cost = r["flops"].get(step) if step else None  # step 0: the student starts at the target
            per_seed.append({"seed": seed, "target": target, "step_to_target": step,
                             "flops_to_target": cost, "tokens_to_target": r["tokens"].get(step) if step is not None else None,
                             "ratio": (base["flops"][base_step] / cost) if cost else None,
                             "final_accuracy": final_accuracy(r["evals"]), "total_flops": max(r["flops"].values()),
                             "wall_s": r["wall"]})
        if per_seed:
            ratios = [p["ratio"] for p in per_seed if p["ratio"]]
            rows[arm] = {"seeds": per_seed, "final_accuracy": float(np.mean([p["final_accuracy"] for p in per_seed])),
                         "reached": f"{len(ratios)}/{len(per_seed)}",
                         "ratio_mean": float(np.mean(ratios)) if ratios else None,
                         "ratio_min": float(np.min(ratios)) if ratios else None,
                         "total_flops": float(np.mean([p["total_flops"] for p in per_seed])),
                         "wall_s": float(np.mean([p["wall_s"] for p in per_seed]))}
    return rows


def plot(results: dict, seeds: list[int], path: Path) -> None:
    """Accuracy vs cumulative FLOPs (mean over seeds at each evaluation, band = min..max), the horizon H_k of every
    run, and ADWIN's audits (alignment a(H) and advantage mass μ(H), all seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = dict(zip(ARMS, ("black", "tab:blue", "tab:orange", "tab:red")))
    for arm in ARMS:
        runs = [results[f"{arm}/{s}"] for s in seeds if f"{arm}/{s}" in results]
        if not runs:
            continue
        steps = [s for s, _ in runs[0]["evals"]]
        acc = np.array([[dict(r["evals"]).get(s, np.nan) for s in steps] for r in runs])
        x = np.mean([[r["flops"].get(s, np.nan) for s in steps] for r in runs], axis=0)
        axes[0].plot(x, np.nanmean(acc, 0), color=colors[arm], marker=".", label=f"{arm} (mean of {len(runs)} seeds)")
        axes[0].fill_between(x, np.nanmin(acc, 0), np.nanmax(acc, 0), color=colors[arm], alpha=0.12)
        for i, r in enumerate(runs):
            axes[1].plot([s for s, _ in r["horizon"]], [h for _, h in r["horizon"]], color=colors[arm],
                         alpha=0.5, lw=1, label=arm if i == 0 else None)
            if arm == "adwin" and r["audits"]:
                st = [u["step"] for u in r["audits"]]
                axes[2].scatter(st, [u["a"] for u in r["audits"]], color="tab:red", s=12, alpha=0.6,
                                label="alignment a(H)" if i == 0 else None)
                axes[2].scatter(st, [u["mass"] for u in r["audits"]], color="tab:green", marker="s", s=12, alpha=0.6,
                                label="advantage mass μ(H)" if i == 0 else None)
    axes[0].set(xlabel="cumulative training FLOPs (sampling + teacher + learner + probes/audits)",
                ylabel="held-out greedy accuracy", title="accuracy vs cost (band: min..max over seeds)")
    axes[1].set(xlabel="step", ylabel="rollout horizon H (tokens)", title="horizon trajectory (every seed)")
    axes[2].set(xlabel="step", ylabel="value", title="ADWIN audits (every seed)", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(a, results, seeds, teacher_acc, student_acc, cmd, out: Path) -> None:
    rows = summarise(results, seeds)
    meta = {"command": cmd, "machine": platform.platform(), "device": a.device, "settings": vars(a),
            "teacher_accuracy": teacher_acc, "student_accuracy": student_acc}
    atomic_write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "summary": rows, "runs": results}, indent=1,
                                                           default=str))
    lines = [f"# ADWIN vs prefix baselines vs full-rollout OPD ({a.device})", "", f"Command: `{cmd}`", "",
             f"Setting: labelled chain, {a.chain_steps} operations, H_max = {a.h_max} tokens; teacher "
             f"{a.teacher_path or f'{a.teacher_model} after {a.teacher_steps} SFT steps'} (held-out greedy "
             f"{teacher_acc:.1%}), student {a.student_path or f'{a.student_model} after {a.student_steps} SFT steps'} "
             f"({student_acc:.1%}); "
             f"{a.steps} OPD steps of {a.batch} prompts, lr {a.lr}, seeds {seeds}. fixed = H ≡ {a.h0}; progressive = "
             f"{a.h0} → {a.h_max} geometric over half the run; adwin = h0 {a.h0}, h_min {a.h_min}, probes every "
             f"{a.probe_every} steps on {a.probe_frac:.0%} of the batch, sketch {a.sketch}.", "",
             "Cost-to-target: cumulative training FLOPs at the first evaluation reaching full-rollout OPD's final "
             "accuracy (mean of its last 3 evaluations) − 1 point, per seed; ratio = cost(full) / cost(arm), > 1 "
             "means cheaper than full-rollout OPD.", "",
             "| arm | final accuracy | reached target | cost ratio (mean) | cost ratio (min) | total FLOPs | wall s/run |",
             "|---|---|---|---|---|---|---|"]
    for arm, r in rows.items():
        fmt = lambda v: f"{v:.2f}×" if v is not None else "—"  # noqa: E731
        lines.append(f"| {arm} | {r['final_accuracy']:.1%} | {r['reached']} | {fmt(r['ratio_mean'])} | "
                     f"{fmt(r['ratio_min'])} | {r['total_flops']:.3g} | {r['wall_s']:.0f} |")
    lines += ["", "Per seed:", "", "| arm | seed | target | step | FLOPs to target | ratio | final |", "|---|---|---|---|---|---|---|"]
    for arm, r in rows.items():
        for p in r["seeds"]:
            lines.append(f"| {arm} | {p['seed']} | {p['target']:.1%} | {p['step_to_target']} | "
                         f"{p['flops_to_target'] or float('nan'):.3g} | {p['ratio'] or float('nan'):.2f} | "
                         f"{p['final_accuracy']:.1%} |")
    for seed in seeds:
        r = results.get(f"adwin/{seed}")
        if r:
            traj = [h for _, h in r["horizon"]]
            changes = [f"step {s}: {h}" for (s, h), prev in zip(r["horizon"], [None] + traj) if h != prev]
            lines.append(f"\nADWIN horizon trajectory, seed {seed}: " + ", ".join(changes))
    lines += ["", f"![accuracy vs cost]({out.with_suffix('.png').name})"]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    plot(results, seeds, out.with_suffix(".png"))


def rewrite(src: Path, out: Path) -> int:
    """Summary, Markdown and plot again from a JSON written by this script (e.g. one brought back from a GPU box)."""
    data = json.loads(src.read_text())
    meta = data["meta"]
    runs = {k: {**r, "flops": {int(s): v for s, v in r["flops"].items()}, "tokens": {int(s): v for s, v in r["tokens"].items()},
                "evals": [tuple(e) for e in r["evals"]], "horizon": [tuple(h) for h in r["horizon"]]}
            for k, r in data["runs"].items()}
    a = argparse.Namespace(**meta["settings"])
    write(a, runs, a.seeds, meta["teacher_accuracy"], meta["student_accuracy"], meta["command"], out)
    print(out.with_suffix(".md").read_text())
    return 0


def held_out_accuracy(model_dir: Path) -> float:
    """The last held-out accuracy its training run logged (the run directory holds `final/` and `metrics.jsonl`)."""
    return [r["eval/accuracy"] for r in read_jsonl(model_dir.parent / "metrics.jsonl") if "eval/accuracy" in r][-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--chain-steps", type=int, default=12)
    p.add_argument("--h-max", type=int, default=128)
    p.add_argument("--h0", type=int, default=32)
    p.add_argument("--h-min", type=int, default=16)
    p.add_argument("--probe-every", type=int, default=4)
    p.add_argument("--probe-frac", type=float, default=0.25)
    p.add_argument("--sketch", default="countsketch:8192")
    p.add_argument("--teacher-path", help="a trained teacher's model directory (skips the teacher SFT)")
    p.add_argument("--student-path", help="a warm-started student's model directory (skips the student SFT)")
    p.add_argument("--teacher-model", default="tiny:1m")
    p.add_argument("--teacher-steps", type=int, default=4000)
    p.add_argument("--student-model", default="tiny:1m")
    p.add_argument("--student-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=150, help="OPD steps per arm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (CPU)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "mentor" / "bench-adwin"))
    p.add_argument("--runs", default="runs/bench-adwin")
    p.add_argument("--name", default="adwin")
    p.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--from-json", help="rewrite the table and plot of a finished benchmark's JSON (no training)")
    a = p.parse_args(argv)
    if a.from_json:
        return rewrite(Path(a.from_json), Path(a.results_dir) / a.name)
    cmd = "python benchmarks/adwin.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(a.cache).mkdir(parents=True, exist_ok=True)
    sft = ["algo=sft", *task_args(a), "optim.warmup_steps=20", "optim.batch_size=64", "optim.micro_batch_size=64",
           "eval.every=0", f"eval.size={a.eval_size}", *common(a, max(a.threads, 2) if a.device == "cpu" else 1)]
    teacher = Path(a.teacher_path) if a.teacher_path else cached_model(a, "teacher", sft + [f"model.path={a.teacher_model}", "optim.lr=2e-3", "optim.schedule=cosine",
                                                "optim.min_lr_ratio=0.05", f"run.steps={a.teacher_steps}", "run.seed=0"])
    student = Path(a.student_path) if a.student_path else cached_model(a, "student", sft + [f"model.path={a.student_model}", "optim.lr=2e-3", "optim.schedule=constant",
                                                f"run.steps={a.student_steps}", "run.seed=1"])
    teacher_acc, student_acc = held_out_accuracy(teacher), held_out_accuracy(student)
    print(f"[bench] teacher {teacher_acc:.1%}, student {student_acc:.1%} held-out greedy", flush=True)
    runs_root = Path(a.runs)
    out = Path(a.results_dir) / a.name
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    jobs = [(arm, seed) for seed in a.seeds for arm in a.arms]

    def one(job):
        arm, seed = job
        run = runs_root / f"{arm}-s{seed}"
        if not (run / "final").exists():
            if run.exists():
                import shutil

                shutil.rmtree(run)
            run.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            mentor_train(arm_overrides(a, arm, seed, teacher, student, run), Path(str(run) + ".log"))
            print(f"[bench] {arm} seed {seed} done in {time.perf_counter() - t0:.0f} s", flush=True)
        return job, collect(run)

    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        for (arm, seed), res in pool.map(one, jobs):
            results[f"{arm}/{seed}"] = res
            write(a, results, a.seeds, teacher_acc, student_acc, cmd, out)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
