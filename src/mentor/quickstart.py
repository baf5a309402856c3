"""`mentor quickstart`: the embedded default run, on CPU in minutes, with nothing downloaded.

Five stages, each an ordinary `mentor train` run whose overrides are printed so it can be rerun or edited:

1. **teacher SFT** — a ~1M-parameter Llama-architecture model and a character tokenizer are built locally and
   trained on 3-digit addition with a per-digit scratchpad;
2. **teacher GRPO** — a short RL stage with a 0/1 verifier reward (the teacher is "SFT + RL", as in the papers);
3. **student SFT** — a 138k-parameter student gets a brief warm start (it stays weak);
4. **student GRPO** — RL from that warm start: the 0/1 reward raises the student's accuracy;
5. **student OPD** — from the same warm start, the student samples, the teacher scores every sampled token, and
   the student is trained on the teacher's per-token log-ratio (on-policy distillation).

Stages 4 and 5 start from the same checkpoint, so the summary plot compares RL and distillation against the
tokens each one sampled.

The teacher (stages 1–2) is cached under `~/.cache/mentor/quickstart/` keyed by its recipe, so a second
quickstart only re-runs the student stages. A summary plot and `summary.md` land in the output directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from .config import load_config

TASK = ["data.task=add", "data.task_args={digits: 3}", "sampling.max_new_tokens=48", "run.progress=true"]


def stages(fast: bool) -> dict[str, list[str]]:
    """The recipe of each stage as overrides (`fast`: a seconds-long smoke version for the tests)."""
    n = (lambda full, smoke: smoke if fast else full)
    eval_ = [f"eval.size={n(256, 16)}"]
    return {
        "teacher_sft": ["algo=sft", "model.path=tiny:1m", *TASK, *eval_, f"run.steps={n(600, 6)}", f"eval.every={n(100, 3)}",
                        "optim.lr=2e-3", "optim.warmup_steps=20", "optim.schedule=cosine", "optim.min_lr_ratio=0.05",
                        "optim.batch_size=64", "optim.micro_batch_size=64", "run.save_every=0"],
        "teacher_grpo": ["algo=grpo", *TASK, *eval_, f"run.steps={n(30, 2)}", f"eval.every={n(15, 2)}", "optim.lr=5e-5",
                         "optim.schedule=constant", f"optim.batch_size={n(16, 2)}", "optim.micro_batch_size=128",
                         "rl.group_size=8", "run.save_every=0"],
        "student_sft": ["algo=sft", "model.path=tiny:100k", *TASK, *eval_, f"run.steps={n(350, 4)}", f"eval.every={n(50, 2)}",
                        "optim.lr=3e-3", "optim.warmup_steps=10", "optim.schedule=constant", "optim.batch_size=64",
                        "optim.micro_batch_size=64", "run.seed=1", "run.save_every=0"],
        "student_grpo": ["algo=grpo", *TASK, *eval_, f"run.steps={n(60, 2)}", f"eval.every={n(15, 2)}", "optim.lr=1e-4",
                         "optim.schedule=constant", f"optim.batch_size={n(16, 2)}", "optim.micro_batch_size=128",
                         "rl.group_size=8", "run.seed=1", "run.save_every=0"],
        "opd": ["algo=opd", *TASK, *eval_, f"run.steps={n(200, 3)}", f"eval.every={n(25, 3)}", "optim.lr=3e-4",
                "optim.warmup_steps=10", "optim.schedule=constant", f"optim.batch_size={n(64, 4)}", "optim.micro_batch_size=64",
                "run.seed=1", "run.save_every=0"],
    }


def _accuracy(run_dir: Path, x: str = "step") -> list[tuple[float, float]]:
    """(x, held-out accuracy) at every evaluation; x is the step or a cumulative metric (0 before the first step)."""
    from .runs import read_jsonl

    return [(r.get(x, 0), r["eval/accuracy"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/accuracy" in r]


def _run(name: str, overrides: list[str], out: Path) -> Path:
    from .train import train

    import shlex

    print(f"\n== {name}: mentor train " + " ".join(shlex.quote(o) for o in overrides + [f"run.out_dir={out}"]), flush=True)
    if out.exists():
        shutil.rmtree(out)
    return train(load_config(None, overrides + [f"run.out_dir={out}"]))


def teacher(fast: bool, cache_root: Path | None = None) -> Path:
    """The SFT+GRPO teacher, trained once per recipe and cached (returns its run directory of stage 2)."""
    s = stages(fast)
    key = hashlib.sha1(json.dumps([s["teacher_sft"], s["teacher_grpo"]]).encode()).hexdigest()[:12]
    root = (cache_root or Path(os.environ.get("MENTOR_CACHE", Path.home() / ".cache" / "mentor"))) / "quickstart" / key
    if (root / "grpo" / "final" / "config.json").exists():
        print(f"== teacher: cached at {root} (delete it to retrain)")
        return root
    sft_dir = _run("teacher SFT", s["teacher_sft"], root / "sft")
    _run("teacher GRPO", s["teacher_grpo"] + [f"model.path={sft_dir / 'final'}"], root / "grpo")
    return root


def quickstart(out: str | Path = "runs/quickstart", fast: bool = False) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    s = stages(fast)
    teacher_root = teacher(fast, cache_root=out / ".cache" if fast else None)
    teacher_model = teacher_root / "grpo" / "final"
    student_dir = _run("student SFT (brief warm start)", s["student_sft"], out / "student_sft")
    grpo_dir = _run("student GRPO", s["student_grpo"] + [f"model.path={student_dir / 'final'}"], out / "student_grpo")
    opd_dir = _run("on-policy distillation", s["opd"] + [f"model.path={student_dir / 'final'}",
                                                          f"distill.teacher={teacher_model}"], out / "opd")
    curves = {"teacher SFT": _accuracy(teacher_root / "sft"), "teacher GRPO": _accuracy(teacher_root / "grpo"),
              "student SFT": _accuracy(student_dir), "student GRPO": _accuracy(grpo_dir), "student OPD": _accuracy(opd_dir)}
    tokens = {"student GRPO": _accuracy(grpo_dir, "cost/tokens_sampled"),
              "student OPD": _accuracy(opd_dir, "cost/tokens_sampled")}
    summary = write_summary(out, curves, tokens, time.perf_counter() - t0)
    print(f"\nmentor quickstart done in {time.perf_counter() - t0:.0f} s")
    for name, c in curves.items():
        print(f"  {name:13s} held-out greedy accuracy {c[0][1]:6.1%} → {c[-1][1]:6.1%}")
    print(f"  teacher        {teacher_root}\n  student runs   {student_dir}, {grpo_dir}, {opd_dir}\n  summary        {summary}")
    return {"teacher": teacher_root, "student_sft": student_dir, "student_grpo": grpo_dir, "opd": opd_dir, "summary": summary}


def write_summary(out: Path, curves: dict[str, list[tuple[float, float]]], tokens: dict[str, list[tuple[float, float]]],
                  seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .runs import atomic_write_text

    teacher_final = curves["teacher GRPO"][-1][1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    offset = 0
    for name in ("teacher SFT", "teacher GRPO"):
        xs, ys = zip(*curves[name])
        axes[0].plot([x + offset for x in xs], ys, marker="o", label=name)
        offset += xs[-1]
    axes[0].set_xlabel("step (stages back to back)")
    for name, c in tokens.items():
        xs, ys = zip(*c)
        axes[1].plot(xs, ys, marker="o", label=name)
    axes[1].axhline(teacher_final, ls="--", c="gray", label="teacher")
    axes[1].set_xlabel("tokens sampled by the student (from the same SFT warm start)")
    for ax in axes:
        ax.set_ylabel("held-out greedy accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "quickstart.png", dpi=90)
    plt.close(fig)
    lines = ["# mentor quickstart", "", f"Total time {seconds:.0f} s on this machine.", "",
             "| stage | accuracy before | accuracy after |", "|---|---|---|"]
    lines += [f"| {n} | {c[0][1]:.1%} | {c[-1][1]:.1%} |" for n, c in curves.items()]
    start = curves["student SFT"][-1][1]
    if teacher_final > start:
        for name in ("student GRPO", "student OPD"):
            closed = (curves[name][-1][1] - start) / (teacher_final - start)
            lines.append(f"\n{name} closed {closed:.0%} of the student–teacher accuracy gap "
                         f"with {tokens[name][-1][0]:,.0f} sampled tokens.")
    lines += ["", "![accuracy](quickstart.png)"]
    path = out / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
