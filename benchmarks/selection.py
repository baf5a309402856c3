"""Prompt selection on a pool with a wide, text-visible difficulty range: uniform vs dynamic (DAPO) vs MoPPS vs GPS.

Every arm starts from the same SFT checkpoint with the same seeds and runs GRPO (groups of G, batch B) through
mentor's own `RLStepper` (the code path of `mentor train`), only `rl.selector` differs. The pool mixes 3-digit
additions (what the checkpoint learnt: intermediate pass rates) with 2- and 4-digit ones (the checkpoint solves
none of them: hopeless, but visible in the text). Reported per arm: held-out 3-digit greedy accuracy vs steps and
vs rollouts spent (discarded dynamic-sampling rollouts included), steps / rollouts to reach a target accuracy,
the fraction of zero-variance groups among sampled groups, and, for MoPPS and GPS, the Brier score of their
predicted pass rates on held-out (never trained) prompts against pass rates measured with G samples from the
arm's final policy (MoPPS predicts its prior, 0.5, for unseen prompts).

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/selection.py --steps 20 --lr 3e-5 --eval-every 5
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/selection.py --allocation-only   # test-time allocation
(`--ckpt` defaults to /tmp/cal/sft/ckpt/step_450/model: tiny:1m after 450 SFT steps on 3-digit addition.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from mentor.config import TrainConfig, from_dict
from mentor.evaluate import evaluate
from mentor.models import load_model, load_tokenizer
from mentor.rl import RLStepper
from mentor.selection.gps import brier
from mentor.tasks import make_prompts
from mentor.train import make_optimizer, make_scheduler


def prompts(split: str, per_digit: dict[int, int], seed: int):
    return [dataclasses.replace(p, id=f"{split}-d{d}-{p.id}") for d, n in per_digit.items()
            for p in make_prompts("add", n, seed, split=split, digits=d)]


def run_arm(arm: str, seed: int, a, pool, held_eval, held_cal) -> dict:
    selector, selector_args = {"uniform": ("uniform", {}), "dynamic": ("dynamic", {}), "mopps": ("mopps", {}),
                               "gps": ("gps", {})}[arm]
    cfg = from_dict(TrainConfig, {
        "algo": "grpo", "run": {"out_dir": f"/tmp/bench-selection/{arm}-{seed}", "seed": seed, "steps": a.steps,
                                "device": "cpu", "threads": 1, "progress": False},
        "model": {"path": a.ckpt}, "data": {"task": "add", "task_args": {"digits": 3}},
        "optim": {"lr": a.lr, "schedule": "constant", "batch_size": a.batch, "micro_batch_size": 128, "grad_clip": 1.0},
        "sampling": {"temperature": 1.0, "max_new_tokens": a.max_new_tokens},
        "rl": {"group_size": a.group, "selector": selector, "selector_args": selector_args,
               "dynamic_max_rounds": a.dynamic_rounds, "dynamic_oversample": 2.0}})
    torch.manual_seed(seed)
    tok = load_tokenizer(a.ckpt)
    model = load_model(a.ckpt, tokenizer=tok)
    opt = make_optimizer(model, cfg.optim)
    sched = make_scheduler(opt, cfg.optim, a.steps)
    stepper = RLStepper(cfg, model, tok, opt, sched, pool, torch.device("cpu"))

    def acc() -> float:
        return float(evaluate(model, tok, held_eval, greedy=True, max_new_tokens=a.max_new_tokens).summary["accuracy"])

    t0 = time.perf_counter()
    curve = [{"step": 0, "rollouts": 0, "accuracy": acc()}]
    spent, drawn, degenerate, trained_groups, briers = 0, 0, 0.0, 0, []
    for step in range(1, a.steps + 1):
        m = stepper.step(step)
        B_G = a.batch * a.group
        if "dynamic/rollouts_spent" in m:
            spent += m["dynamic/rollouts_spent"]
            drawn += m["dynamic/groups_drawn"]
            degenerate += m["dynamic/groups_drawn"] * (1 - m["dynamic/kept_fraction"])
            trained_groups += m["dynamic/groups_kept"]
        else:
            spent += B_G
            drawn += a.batch
            degenerate += a.batch * m["zero_variance_groups"]
            trained_groups += a.batch * (1 - m["zero_variance_groups"])
        if hasattr(stepper.selector, "metrics") and "gps/brier_batch" in stepper.selector.metrics():
            briers.append(stepper.selector.metrics()["gps/brier_batch"])
        if step % a.eval_every == 0 or step == a.steps:
            curve.append({"step": step, "rollouts": spent, "accuracy": acc()})
            print(f"  {arm} seed {seed} step {step}: acc {curve[-1]['accuracy']:.3f} rollouts {spent} "
                  f"zero-var {degenerate / drawn:.2f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    out = {"arm": arm, "seed": seed, "curve": curve, "rollouts_spent": spent, "groups_drawn": drawn,
           "zero_variance_frac": degenerate / drawn, "informative_groups_trained": trained_groups,
           "rollouts_per_effective_group": spent / max(trained_groups, 1e-9), "wall_s": time.perf_counter() - t0}
    if briers:
        out["brier_in_batch_mean"] = float(np.mean(briers[len(briers) // 2:]))  # second half: after warm-up
    if hasattr(stepper.selector, "predict"):
        res = evaluate(model, tok, held_cal, k=a.group, greedy=False, max_new_tokens=a.max_new_tokens, seed=seed)
        s = np.array([it["pass_rate"] for it in res.items])
        p = np.asarray(stepper.selector.predict(held_cal))
        out["heldout_brier"] = brier(p, s)
        out["heldout_brier_prior"] = brier(np.full_like(s, 0.5), s)
        out["heldout_by_digits"] = {str(d): {"pred": float(p[[q.difficulty == d for q in held_cal]].mean()),
                                             "obs": float(s[[q.difficulty == d for q in held_cal]].mean())}
                                    for d in sorted({q.difficulty for q in held_cal})}
    return out


def allocation(a) -> None:
    """Test-time allocation: a GPS predictor trained (no RL) on groups the checkpoint's policy samples from the pool
    spends a fixed budget on held-out prompts by marginal gain; pass@budget vs uniform allocation of the same budget."""
    from mentor.selection import GPS, Observation
    from mentor.selection.allocate import allocate_and_eval

    torch.manual_seed(0)
    tok = load_tokenizer(a.ckpt)
    model = load_model(a.ckpt, tokenizer=tok)
    parse = lambda s: {int(k): int(v) for k, v in (x.split(":") for x in s.split(","))}
    pool = prompts("train", parse(a.pool), 0)
    held = prompts("eval", parse(a.alloc_prompts), 2)
    g = GPS(pool, seed=0)
    t0 = time.perf_counter()
    for step in range(a.alloc_train_steps):
        batch = g.select(a.batch * 2)
        res = evaluate(model, tok, batch, k=a.group, greedy=False, max_new_tokens=a.max_new_tokens, seed=100 + step)
        g.update([Observation(p.id, int(sum(it["correct"])), a.group, step) for p, it in zip(batch, res.items)])
    out = {"train_s": time.perf_counter() - t0, "prompts": a.alloc_prompts}
    for mult in (2, 4):
        r = allocate_and_eval(model, tok, held, mult * len(held), g, cap=4 * mult, max_new_tokens=a.max_new_tokens, seed=7)
        for arm in ("uniform", "predicted"):
            r[arm].pop("counts")
        out[f"budget_{mult}x"] = r
        print(f"allocation budget {mult}x: uniform {r['uniform']['accuracy']:.3f} predicted {r['predicted']['accuracy']:.3f}", flush=True)
    Path(a.out + "_allocation.json").write_text(json.dumps(out, indent=1))
    lines = ["# Test-time allocation (GPS predictor, pass@budget)", "",
             f"Predictor: GPS trained on {a.alloc_train_steps} batches of {a.batch * 2} pool prompts x {a.group} samples "
             f"from `{a.ckpt}` (no RL). Held-out prompts {a.alloc_prompts} (digits:count).", "",
             "| budget | uniform | predicted-difficulty allocation | gain | samples by bin (hard / challenging / easy), predicted |",
             "|---|---|---|---|---|"]
    for mult in (2, 4):
        r = out[f"budget_{mult}x"]
        bins = r["predicted"]["bins"]
        lines.append(f"| {mult} x prompts | {r['uniform']['accuracy']:.3f} | {r['predicted']['accuracy']:.3f} | {r['gain']:+.3f} | "
                     + " / ".join(str(bins[b]["samples"]) for b in ("hard", "challenging", "easy")) + " |")
    Path(a.out + "_allocation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def first_reach(curve, target, key):
    return next((c[key] for c in curve if c["accuracy"] >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="/tmp/cal/sft/ckpt/step_450/model")
    ap.add_argument("--arms", default="uniform,dynamic,mopps,gps")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--dynamic-rounds", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--pool", default="2:150,3:300,4:150", help="digits:count for the training pool")
    ap.add_argument("--eval-size", type=int, default=64, help="held-out 3-digit prompts for accuracy")
    ap.add_argument("--cal", default="2:12,3:40,4:12", help="digits:count of held-out prompts for calibration")
    ap.add_argument("--out", default="benchmarks/results/selection")
    ap.add_argument("--allocation-only", action="store_true", help="only the test-time allocation comparison")
    ap.add_argument("--alloc-prompts", default="2:32,3:64,4:32")
    ap.add_argument("--alloc-train-steps", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.allocation_only:
        return allocation(a)
    parse = lambda s: {int(k): int(v) for k, v in (x.split(":") for x in s.split(","))}
    pool = prompts("train", parse(a.pool), 0)
    held_eval = prompts("eval", {3: a.eval_size}, 0)
    held_cal = prompts("eval", parse(a.cal), 1)
    results = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        for arm in a.arms.split(","):
            results.append(run_arm(arm, seed, a, pool, held_eval, held_cal))
            Path(a.out + ".json").write_text(json.dumps({"args": vars(a), "runs": results}, indent=1))
    report(a, results)


def report(a, results) -> None:
    acc0 = np.mean([r["curve"][0]["accuracy"] for r in results])
    best = max(np.mean([r["curve"][-1]["accuracy"] for r in results if r["arm"] == arm]) for arm in a.arms.split(","))
    target = acc0 + 0.5 * (best - acc0)
    rows, summary = [], {}
    for arm in a.arms.split(","):
        rs = [r for r in results if r["arm"] == arm]
        steps = [first_reach(r["curve"], target, "step") for r in rs]
        rolls = [first_reach(r["curve"], target, "rollouts") for r in rs]
        summary[arm] = {
            "final_acc": float(np.mean([r["curve"][-1]["accuracy"] for r in rs])),
            "steps_to_target": steps, "rollouts_to_target": rolls,
            "rollouts_spent": float(np.mean([r["rollouts_spent"] for r in rs])),
            "zero_variance_frac": float(np.mean([r["zero_variance_frac"] for r in rs])),
            "rollouts_per_effective_group": float(np.mean([r["rollouts_per_effective_group"] for r in rs])),
            "heldout_brier": float(np.mean([r["heldout_brier"] for r in rs])) if "heldout_brier" in rs[0] else None,
            "wall_s": float(np.mean([r["wall_s"] for r in rs]))}
    fmt = lambda v: "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    lines = [f"# Prompt selection benchmark", "",
             f"GRPO from `{a.ckpt}`, pool {a.pool} (digits:prompts), B = {a.batch}, G = {a.group}, lr {a.lr}, "
             f"{a.steps} steps, seeds {a.seeds}; accuracy = greedy on {a.eval_size} held-out 3-digit prompts "
             f"(start {acc0:.3f}); target = start + ½·(best final − start) = {target:.3f}.", "",
             "| arm | final acc | steps to target | rollouts to target | rollouts spent | zero-variance groups | rollouts / informative group | held-out Brier | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | {s['final_acc']:.3f} | {', '.join(fmt(x) for x in s['steps_to_target'])} | "
                     f"{', '.join(fmt(x) for x in s['rollouts_to_target'])} | {s['rollouts_spent']:.0f} | "
                     f"{s['zero_variance_frac']:.2f} | {s['rollouts_per_effective_group']:.1f} | {fmt(s['heldout_brier'])} | {s['wall_s']:.0f} |")
    cal = [r for r in results if "heldout_brier" in r]
    if cal:
        lines += ["", "Held-out calibration (mean predicted vs measured pass rate by digit count, last seed):", "",
                  "| arm | " + " | ".join(f"{d} digits pred / obs" for d in cal[-1]["heldout_by_digits"]) + " | Brier | Brier of constant 0.5 |",
                  "|---|" + "---|" * (len(cal[-1]["heldout_by_digits"]) + 2)]
        for r in cal:
            lines.append(f"| {r['arm']} (seed {r['seed']}) | " + " | ".join(f"{v['pred']:.2f} / {v['obs']:.2f}" for v in r["heldout_by_digits"].values())
                         + f" | {r['heldout_brier']:.4f} | {r['heldout_brier_prior']:.4f} |")
    Path(a.out + ".md").write_text("\n".join(lines) + "\n")
    Path(a.out + ".json").write_text(json.dumps({"args": vars(a), "target": target, "summary": summary, "runs": results}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for arm in a.arms.split(","):
        for r in [r for r in results if r["arm"] == arm]:
            ax[0].plot([c["step"] for c in r["curve"]], [c["accuracy"] for c in r["curve"]], marker="o", label=f"{arm} s{r['seed']}")
            ax[1].plot([c["rollouts"] for c in r["curve"]], [c["accuracy"] for c in r["curve"]], marker="o", label=f"{arm} s{r['seed']}")
    for x, name in zip(ax, ("training steps", "rollouts spent (incl. discarded)")):
        x.axhline(target, color="grey", ls=":")
        x.set_xlabel(name)
        x.set_ylabel("held-out accuracy")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
