"""On-policy distillation benchmark (issue #4, specs/opd.md §4.2): OPD vs ExOPD (λ = 1.25) vs GRPO from one weak
student, a longer OPD budget, and a multi-teacher merge vs each domain teacher.

    nice -n 10 python benchmarks/opd.py --steps 200 --seeds 1,2 --long-steps 600 --threads 1

Every model is an ordinary `mentor train` run built from nothing (recipes in `STAGES` and `arm_recipe`); teachers
and students are cached under `--work/cache/<name>-<hash of the recipe>`, so a rerun retrains nothing:

- `teacher_add`: tiny:1m, SFT on 3-digit addition with the configs/sft-add.yaml settings (800 steps, cosine);
- `teacher_mul`: tiny:1m, SFT on 3-digit × 1-digit multiplication, same settings, 500 steps;
- `student_add`: tiny:100k, SFT on addition at lr 3e-3 (configs/slow-student.yaml: the quickstart's deliberately weak
  student), checkpointed every 25 steps; the checkpoint whose held-out accuracy is nearest 35 % is the student;
- `student_mix`: tiny:100k, the same SFT on the add + mul mixture (600 steps), checkpoint picked the same way on the
  mixture's accuracy (weak on both tasks).

Part 1 (addition; per seed, same student, same held-out prompts): `opd` (λ = 1), `exopd` (`g_opd`, λ = 1.25,
reference = the student's initial weights, the released recipe's value), `grpo` (0/1 reward, 16 prompts × G = 8,
lr 2e-4: configs/slow-rl.yaml). OPD and ExOPD sample 64 completions per step for `--steps` steps;
GRPO samples 128 per step for `--steps / 2` steps, so every arm samples about the same number of student tokens.
Curves: held-out greedy accuracy against cumulative student-sampled tokens and against training wall time (sum of
`time/step`: sampling, teacher/reference scoring and the update; held-out evaluations excluded). "Gap closed" is
(acc − student) / (teacher − student) with acc the mean of the last two evaluations and the teacher evaluated on the
same held-out prompts.

Part 2 (longer budget): plain OPD for `--long-steps` steps on the first seed: the first evaluation at which it has
closed 50 % and 80 % of the gap, in steps, sampled tokens and wall time.

Part 3 (multi-teacher): `student_mix` distilled with both teachers, each prompt routed to its task's teacher
(`distill.teachers = {add, mul}`, `route_field = task`, a `Prompt.meta` key), with λ = 1 (OPD) and λ = 1.25
(ExOPD), against single-teacher students (the same student distilled by one teacher on that teacher's task only).
Every final model, the student before distillation and both teachers are evaluated on each task's held-out prompts
(greedy, `--eval-size` prompts each).

All runs use `--threads` torch threads and run one after another; results (`benchmarks/results/opd.{json,md,png}`)
are rewritten after every run, and finished runs (with a `final/` model) are reused when the command is run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mentor.config import load_config  # noqa: E402
from mentor.runs import atomic_write_text, read_jsonl  # noqa: E402

MAX_NEW = 48
ADD, MUL = ("add", "{digits: 3}"), ("mul", "{digits: 3, mult_digits: 1}")
SFT = ["algo=sft", "optim.batch_size=64", "optim.micro_batch_size=64", "run.save_every=0"]
TEACHER_OPT = ["optim.lr=2e-3", "optim.warmup_steps=20", "optim.schedule=cosine", "optim.min_lr_ratio=0.05", "run.seed=0"]
STUDENT_OPT = ["optim.lr=3e-3", "optim.warmup_steps=10", "optim.schedule=constant", "run.seed=1"]


def task(t: tuple[str, str]) -> list[str]:
    return [f"data.task={t[0]}", f"data.task_args={t[1]}"]


MIX = ["data.task=null", f"data.tasks={{{ADD[0]}: {ADD[1]}, {MUL[0]}: {MUL[1]}}}"]
STAGES = {
    "teacher_add": [*SFT, "model.path=tiny:1m", *task(ADD), *TEACHER_OPT, "run.steps=800"],
    "teacher_mul": [*SFT, "model.path=tiny:1m", *task(MUL), *TEACHER_OPT, "run.steps=500"],
    "student_add": [*SFT, "model.path=tiny:100k", *task(ADD), *STUDENT_OPT, "run.steps=500"],
    "student_mix": [*SFT, "model.path=tiny:100k", *MIX, *STUDENT_OPT, "run.steps=600"],
}
STUDENT_TARGET = 0.35  # students: the checkpoint (every 25 steps) whose held-out accuracy is closest to this
COMMON = [f"sampling.max_new_tokens={MAX_NEW}", "run.save_every=0", "run.progress=false"]


def stage(args, name: str) -> Path:
    """The cached run directory of one teacher/student recipe (trained here if missing)."""
    from mentor.train import train

    o = STAGES[name] + [f"eval.size={args.eval_size}", *COMMON]
    o += ["eval.every=25", "run.save_every=25", "run.keep_checkpoints=0"] if name.startswith("student") else ["eval.every=100"]
    if args.smoke:  # plumbing check only: a few steps per stage
        o += ["run.steps=3"]
    key = hashlib.sha1(json.dumps(o).encode()).hexdigest()[:10]
    out = Path(args.work) / "cache" / f"{name}-{key}"
    if not (out / "final" / "config.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        print(f"[bench] {name} → {out}", flush=True)
        t0 = time.perf_counter()
        train(load_config(None, o + [f"run.out_dir={out}", f"run.threads={args.threads}"]))
        atomic_write_text(out / "wall_s.txt", f"{time.perf_counter() - t0:.1f}\n")
    return out


def student_model(args, name: str) -> Path:
    """The student checkpoint closest to STUDENT_TARGET held-out accuracy (the SFT curve is steep there: a fixed step
    count would move the start by 15 points with the thread count)."""
    d = stage(args, name)
    c = [(abs(e["acc"] - STUDENT_TARGET), e["step"]) for e in collect(d)["evals"] if (d / "ckpt" / f"step_{e['step']}").exists()]
    return d / "ckpt" / f"step_{min(c)[1]}" / "model" if c else d / "final"


def arm_recipe(args, arm: str, seed: int, steps: int, student: Path, teachers: dict[str, Path], data: list[str]) -> list[str]:
    o = [f"model.path={student}", *data, f"run.seed={seed}", f"eval.every={args.eval_every}",
         f"eval.size={args.eval_size}", f"run.threads={args.threads}", *COMMON, "optim.schedule=constant"]
    if arm == "grpo":
        return o + ["algo=grpo", f"run.steps={steps // 2}", f"eval.every={max(1, args.eval_every // 2)}", f"optim.lr={args.grpo_lr}",
                    "optim.batch_size=16", "optim.micro_batch_size=128", "rl.group_size=8"]
    lam = 1.25 if arm.startswith("exopd") else 1.0
    o += ["algo=g_opd" if lam != 1 else "algo=opd", f"run.steps={steps}", f"optim.lr={args.lr}", "optim.warmup_steps=10",
          "optim.batch_size=64", "optim.micro_batch_size=64"]
    if len(teachers) == 1:
        o.append(f"distill.teacher={next(iter(teachers.values())) / 'final'}")
    else:
        o += ["distill.route_field=task",
              "distill.teachers={" + ", ".join(f"{n}: {{model: {p / 'final'}}}" for n, p in teachers.items()) + "}"]
    if lam != 1:
        o += [f"distill.reward_scale={lam}", "distill.reference=student_init"]
    return o


def run_arm(args, name: str, recipe: list[str]) -> Path:
    from mentor.train import train

    out = Path(args.work) / "runs" / name
    if not (out / "final" / "config.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        print(f"[bench] {name} → {out}", flush=True)
        train(load_config(None, recipe + [f"run.out_dir={out}"]))
    return out


def collect(run_dir: Path) -> dict:
    """Held-out accuracy at every evaluation with the cumulative sampled tokens and training seconds there."""
    t, tok, evals = 0.0, 0, []
    for r in read_jsonl(run_dir / "metrics.jsonl"):
        if r["step"] > 0:
            t += r.get("time/step", 0.0)
            tok = r.get("cost/total_sampled_tokens", tok)
        if "eval/accuracy" in r:
            evals.append({"step": r["step"], "acc": r["eval/accuracy"], "tokens": tok, "time": t})
    return {"evals": evals, "final": float(np.mean([e["acc"] for e in evals[-2:]])), "tokens": tok, "time": t}


def held_out_accuracy(model_dir: Path, t: tuple[str, str], seed: int, n: int) -> float:
    """Greedy accuracy of a saved model on the first `n` held-out prompts of a task, as `mentor train`'s eval
    with `run.seed = seed` sees them."""
    import yaml

    from mentor.evaluate import evaluate
    from mentor.models import load_model, load_tokenizer
    from mentor.tasks import make_prompts

    prompts = make_prompts(t[0], n, seed, "eval", **yaml.safe_load(t[1]))
    model = load_model(str(model_dir))
    res = evaluate(model, load_tokenizer(str(model_dir)), prompts, greedy=True, max_new_tokens=MAX_NEW)
    return float(res.summary["accuracy"])


def share(gain: float, gap: float) -> float:
    """gain / gap: the share of the student-teacher gap closed (NaN when the teacher is not ahead)."""
    return gain / gap if gap > 0 else float("nan")


def gap_points(c: dict, start: float, teacher: float, fractions=(0.5, 0.8)) -> dict:
    out = {}
    for f in fractions:
        e = next((e for e in c["evals"] if e["acc"] - start >= f * (teacher - start)), None)
        out[f"{f:g}"] = None if e is None else {k: e[k] for k in ("step", "tokens", "time", "acc")}
    return out


def part1(args, R: dict) -> None:
    student, teacher = student_model(args, "student_add"), stage(args, "teacher_add")
    for seed in args.seeds:
        row = R["part1"].setdefault(str(seed), {})
        if "teacher" not in row:
            row["teacher"] = held_out_accuracy(teacher / "final", ADD, seed, args.eval_size)
        for arm in args.arms:
            d = run_arm(args, f"p1-{arm}-seed{seed}",
                        arm_recipe(args, arm, seed, args.steps, student, {"add": teacher}, task(ADD)))
            c = collect(d)
            c["start"] = c["evals"][0]["acc"]
            c["gap_closed"] = share(c["final"] - c["start"], row["teacher"] - c["start"])
            row[arm] = c
            write(args, R)


def part2(args, R: dict) -> None:
    if not args.long_steps:
        return
    student, teacher = student_model(args, "student_add"), stage(args, "teacher_add")
    seed = args.seeds[0]
    t_acc = held_out_accuracy(teacher / "final", ADD, seed, args.eval_size)
    d = run_arm(args, f"p2-opd-{args.long_steps}-seed{seed}",
                arm_recipe(args, "opd", seed, args.long_steps, student, {"add": teacher}, task(ADD)))
    c = collect(d)
    c["start"], c["teacher"] = c["evals"][0]["acc"], t_acc
    c["gap_closed"] = share(c["final"] - c["start"], t_acc - c["start"])
    c["best_gap_closed"] = share(max(e["acc"] for e in c["evals"]) - c["start"], t_acc - c["start"])
    c["reached"] = gap_points(c, c["start"], t_acc)
    R["part2"] = {"seed": seed, "steps": args.long_steps, **c}
    write(args, R)


def part3(args, R: dict) -> None:
    if not args.multi_steps:
        return
    student, t_add, t_mul = student_model(args, "student_mix"), stage(args, "teacher_add"), stage(args, "teacher_mul")
    seed = args.seeds[0]
    ev = lambda d: {t[0]: held_out_accuracy(d, t, seed, args.eval_size) for t in (ADD, MUL)}  # noqa: E731
    P = R["part3"]
    for name, d in (("teacher_add", t_add), ("teacher_mul", t_mul), ("student_mix (start)", student)):
        if name not in P:
            P[name] = {"acc": ev(d if d == student else d / "final")}
    arms = {"multi-teacher OPD (λ = 1)": ("opd", {"add": t_add, "mul": t_mul}, MIX),
            "multi-teacher ExOPD (λ = 1.25)": ("exopd", {"add": t_add, "mul": t_mul}, MIX),
            "single teacher_add, add prompts": ("opd", {"add": t_add}, task(ADD)),
            "single teacher_mul, mul prompts": ("opd", {"mul": t_mul}, task(MUL))}
    for i, (name, (arm, teachers, data)) in enumerate(arms.items()):
        d = run_arm(args, f"p3-{i}-{arm}-{'+'.join(teachers)}-seed{seed}",
                    arm_recipe(args, arm, seed, args.multi_steps, student, teachers, data))
        c = collect(d)
        P[name] = {"acc": ev(d / "final"), "tokens": c["tokens"], "time": c["time"], "evals": c["evals"]}
        write(args, R)


def write(args, R: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dest = Path(args.results)
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "opd.json", json.dumps(R, indent=1))
    colors = {"opd": "C0", "exopd": "C3", "grpo": "C2"}
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.4))
    for si, (seed, row) in enumerate(R["part1"].items()):
        ls = ["-", ":", "--", "-."][si % 4]
        for arm in [a for a in args.arms if a in row]:
            ev = row[arm]["evals"]
            for ax, x in zip(axes[:2], ("tokens", "time")):
                ax.plot([e[x] for e in ev], [e["acc"] for e in ev], ls, marker=".", c=colors[arm], label=f"{arm} seed {seed}")
        for ax in axes[:2]:
            ax.axhline(row["teacher"], c="gray", ls=ls, lw=0.8)
    if "evals" in R.get("part2", {}):
        p2 = R["part2"]
        axes[2].plot([e["tokens"] for e in p2["evals"]], [e["acc"] for e in p2["evals"]], marker=".", c="C0",
                     label=f"opd {p2['steps']} steps, seed {p2['seed']}")
        for f, ls in ((0.5, "--"), (0.8, ":")):
            axes[2].axhline(p2["start"] + f * (p2["teacher"] - p2["start"]), c="gray", ls=ls, lw=0.8,
                            label=f"{f:.0%} of the gap")
        axes[2].axhline(p2["teacher"], c="k", lw=0.8, label="teacher")
    if R.get("part3"):
        names = list(R["part3"])
        for j, t in enumerate(("add", "mul")):
            axes[3].bar(np.arange(len(names)) + 0.4 * j - 0.2, [R["part3"][n]["acc"][t] for n in names], 0.4, label=t)
        axes[3].set_xticks(np.arange(len(names)), [n.replace(" (", "\n(").replace(", ", ",\n") for n in names],
                           fontsize=6, rotation=30, ha="right")
        axes[3].set_ylabel("held-out greedy accuracy per task")
        axes[3].set_title("multi-teacher merge", fontsize=9)
    axes[0].set_xlabel("student-sampled tokens (cumulative)")
    axes[1].set_xlabel("training wall time, s (held-out evals excluded)")
    axes[2].set_xlabel("student-sampled tokens (longer OPD budget)")
    for ax in axes[:3]:
        ax.set_ylabel("held-out greedy accuracy (3-digit add)")
    for ax in axes:
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("OPD vs ExOPD (λ = 1.25) vs GRPO from the same 100k student; grey: the 1m teacher")
    fig.tight_layout()
    fig.savefig(dest / "opd.png", dpi=90)
    plt.close(fig)
    atomic_write_text(dest / "opd.md", report(args, R))


def report(args, R: dict) -> str:
    L = ["# On-policy distillation: OPD vs ExOPD vs GRPO, longer budget, multi-teacher merge", "",
         f"Command: `{R['command']}`", "",
         f"Machine: {platform.platform()}, {args.threads} torch thread(s) per run, runs one after another on a shared "
         "2-core VM (wall times are comparable within this run only). Recipes: the module docstring of "
         "`benchmarks/opd.py`; cached teacher/student SFT wall times: "
         + ", ".join(f"{k} {v:.0f} s" for k, v in R.get("stage_wall_s", {}).items()) + ".", "",
         "## 1. Same weak student (tiny:100k), same teacher (tiny:1m), 3-digit addition", "",
         f"OPD/ExOPD: {args.steps} steps × 64 samples at lr {args.lr:g}; GRPO: {args.steps // 2} steps × 16 prompts × 8 "
         f"samples at lr {args.grpo_lr:g}. Accuracy = held-out greedy on {args.eval_size} prompts, final = mean of the last two "
         "evaluations. Wall time = training time only.", "",
         "| seed | arm | student start | final acc | teacher | gap closed | sampled tokens | wall time (s) | acc / 100k tokens |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for seed, row in R["part1"].items():
        for arm in [a for a in args.arms if a in row]:
            c = row[arm]
            L.append(f"| {seed} | {arm} | {c['start']:.1%} | {c['final']:.1%} | {row['teacher']:.1%} | "
                     f"{c['gap_closed']:.0%} | {c['tokens']:,} | {c['time']:.0f} | "
                     f"{100 * (c['final'] - c['start']) / (c['tokens'] / 1e5):+.1f} pts |")
    arms = [a for a in args.arms if all(a in row for row in R["part1"].values())]
    if R["part1"] and arms:
        L += ["", "Mean over seeds (ratios vs OPD):", "", "| arm | gap closed | final acc | wall time (s) | time ratio vs opd |",
              "|---|---:|---:|---:|---:|"]
        m = {a: {k: float(np.mean([row[a][k] for row in R["part1"].values()])) for k in ("gap_closed", "final", "time")}
             for a in arms}
        for a in arms:
            ratio = m[a]["time"] / m["opd"]["time"] if "opd" in m else float("nan")
            L.append(f"| {a} | {m[a]['gap_closed']:.0%} | {m[a]['final']:.1%} | {m[a]['time']:.0f} | {ratio:.2f} |")
    if "evals" in R.get("part2", {}):
        p = R["part2"]
        L += ["", f"## 2. Longer OPD budget ({p['steps']} steps, seed {p['seed']})", "",
              f"Student {p['start']:.1%} → final {p['final']:.1%} (best evaluation "
              f"{max(e['acc'] for e in p['evals']):.1%}); teacher {p['teacher']:.1%}: final gap closed "
              f"{p['gap_closed']:.0%}, best {p['best_gap_closed']:.0%}.", "",
              "| share of the gap | first reached at step | sampled tokens | wall time (s) | accuracy there |", "|---|---:|---:|---:|---:|"]
        for f, e in p["reached"].items():
            L.append(f"| {float(f):.0%} | " + ("not reached | – | – | – |" if e is None else
                     f"{e['step']} | {e['tokens']:,} | {e['time']:.0f} | {e['acc']:.1%} |"))
    if R.get("part3"):
        L += ["", f"## 3. Multi-teacher merge ({args.multi_steps} steps, seed {args.seeds[0]})", "",
              "Student tiny:100k SFT'd on the add + mul mixture; teachers tiny:1m SFT'd on one task each. Held-out greedy "
              f"accuracy on {args.eval_size} prompts per task after distillation.", "",
              "| model | add | mul | mean | sampled tokens | wall time (s) |", "|---|---:|---:|---:|---:|---:|"]
        for name, c in R["part3"].items():
            a = c["acc"]
            L.append(f"| {name} | {a['add']:.1%} | {a['mul']:.1%} | {(a['add'] + a['mul']) / 2:.1%} | "
                     + (f"{c['tokens']:,} | {c['time']:.0f} |" if "tokens" in c else "– | – |"))
    L += ["", "![curves](opd.png)"]
    if R.get("notes"):
        L += ["", "## Reading", "", *R["notes"]]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200, help="OPD/ExOPD steps in part 1 (GRPO gets half, at 2x the samples)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--arms", type=lambda s: s.split(","), default=["opd", "exopd", "grpo"])
    p.add_argument("--long-steps", type=int, default=600, help="part 2 OPD steps (0: skip)")
    p.add_argument("--multi-steps", type=int, default=200, help="part 3 steps per distillation run (0: skip)")
    p.add_argument("--lr", type=float, default=3e-4, help="OPD / ExOPD learning rate (10 warm-up steps)")
    p.add_argument("--grpo-lr", type=float, default=2e-4, help="GRPO learning rate (configs/slow-rl.yaml's)")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/bench-opd", help="cache of teachers/students and run directories")
    p.add_argument("--results", default=str(Path(__file__).parent / "results"))
    p.add_argument("--smoke", action="store_true", help="3 steps per teacher/student stage (checks the plumbing)")
    p.add_argument("--notes", default=None, help="a Markdown file whose lines are appended as 'Reading'")
    args = p.parse_args(argv)
    if bad := [a for a in args.arms if a not in ("opd", "exopd", "grpo")]:
        p.error(f"--arms: choose from opd, exopd, grpo; got {bad}")
    import torch

    torch.set_num_threads(args.threads)
    command = "nice -n 10 python benchmarks/opd.py " + " ".join(sys.argv[1:] if argv is None else argv)
    R = {"command": command, "config": vars(args), "machine": platform.platform(), "part1": {}, "part3": {},
         "notes": Path(args.notes).read_text().splitlines() if args.notes else []}
    t0 = time.perf_counter()
    for name in ("teacher_add", "student_add") + (("teacher_mul", "student_mix") if args.multi_steps else ()):
        d = stage(args, name)
        R.setdefault("stage_wall_s", {})[name] = float((d / "wall_s.txt").read_text())
        R.setdefault("stages", {})[name] = {"recipe": STAGES[name], "evals": collect(d)["evals"]}
        if name.startswith("student"):
            R["stages"][name]["checkpoint"] = str(student_model(args, name).relative_to(d))
    part1(args, R)
    part2(args, R)
    part3(args, R)
    R["total_wall_s"] = time.perf_counter() - t0
    write(args, R)
    print(report(args, R))
    return 0


if __name__ == "__main__":
    sys.exit(main())
