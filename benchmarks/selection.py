"""Prompt selection on a pool with a wide, text-visible difficulty range: uniform vs dynamic (DAPO) vs MoPPS vs GPS.

Every arm starts from the same SFT checkpoint with the same seeds and runs GRPO (groups of G, batch B) through
mentor's own `RLStepper` (the code path of `mentor train`), only `rl.selector` differs. The pool mixes 3-digit
additions (what the checkpoint learnt: intermediate pass rates) with 1-, 2- and 4-digit ones (the checkpoint solves
none of them at the start: hopeless, but visible in the text). Reported per arm: held-out greedy accuracy on the
pool's digit mix (and per digit count) vs steps and vs rollouts spent (discarded dynamic-sampling rollouts included), steps / rollouts to reach a target accuracy,
the fraction of zero-variance groups among sampled groups, and, for MoPPS and GPS, the Brier score of their
predicted pass rates on held-out (never trained) prompts against pass rates measured with G samples from the
arm's final policy (MoPPS predicts its prior, 0.5, for unseen prompts).

The student (`--ckpt`, default /tmp/gps/student/ckpt/step_375/model) is tiny:100k after 375 SFT steps on 3-digit
addition (≈ 40 % greedy, 13 % sampled pass rate at T = 1; 0 % on 1-, 2- and 4-digit additions):

    mentor train configs/sft-add.yaml model.path=tiny:100k run.steps=500 optim.lr=3e-3 optim.schedule=constant \
        optim.warmup_steps=10 run.seed=1 run.save_every=25 run.keep_checkpoints=0 eval.every=25 \
        run.out_dir=/tmp/gps/student run.threads=1
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/selection.py                      # all arms, seeds 0,1,2
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/selection.py --report-only        # table + plot from runs/
    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/selection.py --allocation-only --ckpt /tmp/cal/sft/ckpt/step_450/model --pool 2:150,3:300,4:150

Each finished (arm, seed) is written to `<out>_runs/<arm>-<seed>.json` and skipped when the script is run again,
and a run in progress is claimed by a `.running` file, so two identical invocations share the work; a final
`--report-only` joins the finished runs (a crashed run leaves its `.running` file: delete it to redo that run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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


# arm -> (rl.selector, rl.selector_args). `gps_explore` is a sensitivity arm, not a paper setting: stronger diversity
# (λ = 0.5 instead of 0.05) and a repeat penalty over the last 4 batches (μ = 1, B_prev = 4) — with the defaults,
# GPS re-picks the few prompts it predicts nearest γ* = 0.5 almost every step on this pool. `dynamic_gps`: DAPO
# dynamic sampling with GPS proposing each round's prompts. `gps_norepeat`: GPS whose candidates exclude the prompts
# picked in the last 50 steps (800 prompts / 16 per step: one epoch without replacement; `no_repeat_steps`, ours).
# `gps_ts`: GPS with Thompson acquisition (ours): utility on p̃ ~ Beta(8 p̂, 8 (1 − p̂)) instead of p̂. `gps_ts_t25`:
# the same aiming at γ* = 0.25 (a sensitivity arm: held-out accuracy is greedy, and at T = 1 the prompts sampled at
# pass rate ≈ 0.5 are mostly solved greedily already); `mopps_t25` is MoPPS with the same γ* = 0.25. `dynamic_gps_ts`
# and `dynamic_gps_ts_t25`: DAPO dynamic sampling with Thompson-GPS proposing each round's prompts (GPS's claim is
# to save the rollouts dynamic sampling discards).
ARMS = {"uniform": ("uniform", {}), "dynamic": ("dynamic", {}), "mopps": ("mopps", {}), "gps": ("gps", {}),
        "gps_explore": ("gps", {"lam": 0.5, "mu": 1.0, "prev_steps": 4}), "dynamic_gps": ("dynamic", {"inner": "gps"}),
        "gps_norepeat": ("gps", {"no_repeat_steps": 50}), "gps_ts": ("gps", {"acquisition": "thompson"}),
        "gps_ts_t25": ("gps", {"acquisition": "thompson", "target": 0.25}), "mopps_t25": ("mopps", {"target": 0.25}),
        "dynamic_gps_ts": ("dynamic", {"inner": "gps", "inner_args": {"acquisition": "thompson"}}),
        "dynamic_gps_ts_t25": ("dynamic", {"inner": "gps", "inner_args": {"acquisition": "thompson", "target": 0.25}})}


def prompts(split: str, per_digit: dict[int, int], seed: int):
    return [dataclasses.replace(p, id=f"{split}-d{d}-{p.id}") for d, n in per_digit.items()
            for p in make_prompts("add", n, seed, split=split, digits=d)]


def run_arm(arm: str, seed: int, a, pool, held_eval, held_cal) -> dict:
    """One GRPO run of `a.steps` steps with selector `arm`; the held-out accuracy curve and selection statistics."""
    selector, selector_args = ARMS[arm]
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

    sampled: dict[int, list[int]] = {}  # digit count -> [groups sampled, successes, rollouts], dropped groups included
    sample_and_score = stepper.sample_and_score

    times_sampled: dict[str, int] = {}  # prompt id -> groups sampled
    outcomes: dict[str, list[tuple[int, int]]] = {}  # prompt id -> (step, successes of G) per sampled group

    def counting(batch):
        groups = sample_and_score(batch)
        for g in groups:
            times_sampled[g.prompt.id] = times_sampled.get(g.prompt.id, 0) + 1
            outcomes.setdefault(g.prompt.id, []).append((stepper.step_no, sum(g.correct)))
            c = sampled.setdefault(g.prompt.difficulty, [0, 0, 0])
            c[0], c[1], c[2] = c[0] + 1, c[1] + sum(g.correct), c[2] + len(g.correct)
        return groups

    stepper.sample_and_score = counting

    def acc() -> dict:
        """Greedy accuracy on the held-out mix (same digit proportions as the pool), overall and per digit count."""
        items = evaluate(model, tok, held_eval, greedy=True, max_new_tokens=a.max_new_tokens).items
        ok = np.array([it["pass_rate"] for it in items])
        d = np.array([p.difficulty for p in held_eval])
        return {"accuracy": float(ok.mean()), "by_digits": {str(k): float(ok[d == k].mean()) for k in sorted(set(d))}}

    t0 = time.perf_counter()
    curve = [{"step": 0, "rollouts": 0, **acc()}]
    spent, drawn, degenerate, trained_groups, briers, trace = 0, 0, 0.0, 0, [], []
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
        trace.append({"step": step, "rollouts": spent, "zero_variance_frac": degenerate / drawn})
        if hasattr(stepper.selector, "metrics") and "gps/brier_batch" in stepper.selector.metrics():
            briers.append(stepper.selector.metrics()["gps/brier_batch"])
        if step % a.eval_every == 0 or step == a.steps:
            curve.append({"step": step, "rollouts": spent, **acc()})
            print(f"  {arm} seed {seed} step {step}: acc {curve[-1]['accuracy']:.3f} {curve[-1]['by_digits']} rollouts {spent:.0f} "
                  f"zero-var {degenerate / drawn:.2f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    out = {"arm": arm, "seed": seed, "curve": curve, "rollouts_spent": spent, "groups_drawn": drawn,
           "zero_variance_frac": degenerate / drawn, "informative_groups_trained": trained_groups,
           "rollouts_per_effective_group": spent / max(trained_groups, 1e-9), "wall_s": time.perf_counter() - t0,
           "trace": trace, "distinct_prompts": len(times_sampled), "max_times_one_prompt": max(times_sampled.values()),
           "most_sampled": [{"id": k, "groups": len(outcomes[k]), "successes": [c for _, c in outcomes[k]]}
                            for k in sorted(outcomes, key=lambda k: -len(outcomes[k]))[:5]],
           "sampled_by_digits": {str(k): {"groups": v[0], "pass_rate": v[1] / v[2]} for k, v in sorted(sampled.items())}}
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


def greedy_vs_pass(a) -> None:
    """Why γ* matters here: the held-out metric is greedy accuracy, the acquisition targets the sampled (T = 1) pass
    rate. For the start checkpoint, greedy correctness of held-out prompts binned by their pass rate over 16 samples."""
    torch.manual_seed(0)
    tok = load_tokenizer(a.ckpt)
    model = load_model(a.ckpt, tokenizer=tok)
    held = prompts("eval", {3: 256}, 3)
    greedy = np.array([it["pass_rate"] for it in evaluate(model, tok, held, greedy=True, max_new_tokens=a.max_new_tokens).items])
    rate = np.array([it["pass_rate"] for it in evaluate(model, tok, held, k=16, greedy=False,
                                                         max_new_tokens=a.max_new_tokens, seed=0).items])
    bins = [("0", rate == 0), ("(0, 0.25]", (rate > 0) & (rate <= 0.25)), ("(0.25, 0.5]", (rate > 0.25) & (rate <= 0.5)),
            ("(0.5, 0.75]", (rate > 0.5) & (rate <= 0.75)), ("(0.75, 1]", rate > 0.75)]
    lines = ["# Greedy accuracy vs sampled pass rate (start checkpoint)", "",
             f"`python benchmarks/selection.py --greedy-vs-pass --ckpt {a.ckpt}`: 256 held-out 3-digit additions, pass "
             f"rate over 16 samples at T = 1 ({a.max_new_tokens} new tokens) vs greedy correctness.", "",
             f"Mean pass rate {rate.mean():.3f}, greedy accuracy {greedy.mean():.3f}.", "",
             "| pass rate (T = 1, 16 samples) | prompts | greedy accuracy |", "|---|---|---|"]
    for name, m in bins:
        lines.append(f"| {name} | {int(m.sum())} | {greedy[m].mean():.3f} |" if m.any() else f"| {name} | 0 | — |")
    Path(a.out + "_greedy_vs_pass.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def first_reach(curve, target, key):
    """`key` ("step" or "rollouts") at the first evaluation whose accuracy is >= target; None if never."""
    return next((c[key] for c in curve if c["accuracy"] >= target), None)


def parse_mix(s: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (x.split(":") for x in s.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="/tmp/gps/student/ckpt/step_375/model")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--dynamic-rounds", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--pool", default="1:100,2:100,3:400,4:200", help="digits:count for the training pool")
    ap.add_argument("--eval-mix", default="1:64,2:64,3:256,4:128",
                    help="digits:count of held-out prompts for accuracy (default: the pool's proportions)")
    ap.add_argument("--cal", default="1:16,2:16,3:64,4:32", help="digits:count of held-out prompts for calibration")
    ap.add_argument("--target-drop", type=float, default=0.01,
                    help="target accuracy = uniform's final accuracy (mean over seeds) minus this")
    ap.add_argument("--out", default="benchmarks/results/selection")
    ap.add_argument("--report-only", action="store_true", help="table and plot from the finished runs in <out>_runs/")
    ap.add_argument("--allocation-only", action="store_true", help="only the test-time allocation comparison")
    ap.add_argument("--greedy-vs-pass", action="store_true", help="only the greedy-accuracy-by-pass-rate table")
    ap.add_argument("--alloc-prompts", default="2:32,3:64,4:32")
    ap.add_argument("--alloc-train-steps", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.greedy_vs_pass:
        return greedy_vs_pass(a)
    if a.allocation_only:
        return allocation(a)
    runs_dir = Path(a.out + "_runs")
    if not a.report_only:
        runs_dir.mkdir(parents=True, exist_ok=True)
        pool = prompts("train", parse_mix(a.pool), 0)
        held_eval = prompts("eval", parse_mix(a.eval_mix), 0)
        held_cal = prompts("eval", parse_mix(a.cal), 1)
        for seed in [int(s) for s in a.seeds.split(",")]:
            for arm in a.arms.split(","):
                f, claim = runs_dir / f"{arm}-{seed}.json", runs_dir / f"{arm}-{seed}.running"
                try:  # claimed atomically: parallel invocations share the (seed, arm) list without running one twice
                    os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    continue
                if not f.exists():
                    f.write_text(json.dumps(run_arm(arm, seed, a, pool, held_eval, held_cal), indent=1))
                claim.unlink()
    results = [json.loads((runs_dir / f"{arm}-{s}.json").read_text()) for s in a.seeds.split(",")
               for arm in a.arms.split(",") if (runs_dir / f"{arm}-{s}.json").exists()]
    if not results and a.report_only and Path(a.out + ".json").exists():  # the committed JSON holds every run
        results = [r for r in json.loads(Path(a.out + ".json").read_text())["runs"]
                   if r["arm"] in a.arms.split(",") and str(r["seed"]) in a.seeds.split(",")]
    report(a, results)


def mean_se(xs) -> tuple[float, float]:
    """Mean and standard error of the mean over seeds (0 for one seed)."""
    x = np.asarray(xs, dtype=float)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def report(a, results) -> None:
    arms = [arm for arm in a.arms.split(",") if any(r["arm"] == arm for r in results)]
    by_arm = {arm: [r for r in results if r["arm"] == arm] for arm in arms}
    acc0 = float(np.mean([r["curve"][0]["accuracy"] for r in results]))
    uni_final = float(np.mean([r["curve"][-1]["accuracy"] for r in by_arm["uniform"]]))
    target = uni_final - a.target_drop
    n_eval = sum(parse_mix(a.eval_mix).values())
    se_eval = lambda p: float(np.sqrt(p * (1 - p) / n_eval))
    fmt = lambda v: "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    summary = {}
    for arm, rs in by_arm.items():
        steps = [first_reach(r["curve"], target, "step") for r in rs]
        rolls = [first_reach(r["curve"], target, "rollouts") for r in rs]
        reached = [x for x in steps if x is not None]
        summary[arm] = {
            "seeds": [r["seed"] for r in rs],
            "final_acc": mean_se([r["curve"][-1]["accuracy"] for r in rs]),
            "best_acc": mean_se([max(c["accuracy"] for c in r["curve"]) for r in rs]),
            "steps_to_target": steps, "rollouts_to_target": rolls,
            "steps_to_target_mean": float(np.mean(reached)) if len(reached) == len(rs) else None,
            "rollouts_to_target_mean": float(np.mean(rolls)) if len(reached) == len(rs) else None,
            "rollouts_spent": mean_se([r["rollouts_spent"] for r in rs]),
            "zero_variance_frac": mean_se([r["zero_variance_frac"] for r in rs]),
            "rollouts_per_effective_group": mean_se([r["rollouts_per_effective_group"] for r in rs]),
            "heldout_brier": mean_se([r["heldout_brier"] for r in rs]) if "heldout_brier" in rs[0] else None,
            "heldout_brier_prior": mean_se([r["heldout_brier_prior"] for r in rs]) if "heldout_brier" in rs[0] else None,
            "wall_s": mean_se([r["wall_s"] for r in rs]),
            "distinct_prompts": mean_se([r["distinct_prompts"] for r in rs]),
            "max_times_one_prompt": mean_se([r["max_times_one_prompt"] for r in rs]),
            "final_by_digits": {k: mean_se([r["curve"][-1]["by_digits"][k] for r in rs]) for k in rs[0]["curve"][-1]["by_digits"]},
            "start_by_digits": {k: float(np.mean([r["curve"][0]["by_digits"][k] for r in rs])) for k in rs[0]["curve"][0]["by_digits"]},
            "sampled_share_by_digits": {k: float(np.mean([r["sampled_by_digits"].get(k, {"groups": 0})["groups"] / r["groups_drawn"] for r in rs]))
                                        for k in sorted({k for r in rs for k in r["sampled_by_digits"]})},
            "sampled_pass_by_digits": {k: float(np.mean([r["sampled_by_digits"][k]["pass_rate"] for r in rs if k in r["sampled_by_digits"]]))
                                       for k in sorted({k for r in rs for k in r["sampled_by_digits"]})},
            "curve_steps": [c["step"] for c in rs[0]["curve"]],
            "curve_mean": [float(np.mean([r["curve"][i]["accuracy"] for r in rs])) for i in range(len(rs[0]["curve"]))],
            "curve_rollouts_mean": [float(np.mean([r["curve"][i]["rollouts"] for r in rs])) for i in range(len(rs[0]["curve"]))]}
    seeds = sorted({r["seed"] for r in results})
    ms = lambda t, f="{:.3f}": f.format(t[0]) + (" ± " + f.format(t[1]) if len(seeds) > 1 else "")
    lines = ["# Prompt selection benchmark", "",
             f"GRPO from `{a.ckpt}`, pool {a.pool} (digits:prompts), B = {a.batch} prompts × G = {a.group}, lr {a.lr} "
             f"(constant), {a.max_new_tokens} new tokens, {a.steps} steps, seeds {','.join(map(str, seeds))}; dynamic: "
             f"oversample 2×, ≤ {a.dynamic_rounds} rounds. Accuracy = greedy on {n_eval} held-out prompts ({a.eval_mix}, the "
             f"pool's digit proportions) every "
             f"{a.eval_every} steps (start {acc0:.3f}; one evaluation's binomial standard error ≈ {se_eval(acc0):.3f} at the "
             f"start, ≤ {se_eval(0.5):.3f} anywhere). **Target = uniform's final accuracy (mean over seeds) − "
             f"{a.target_drop:.2f} = {target:.3f}**; steps / rollouts to target are read at the first evaluation ≥ target "
             f"(granularity {a.eval_every} steps), per seed.", "",
             "Mean ± standard error over seeds:", "",
             "| arm | final acc | best acc | steps to target (per seed) | mean steps | rollouts to target (per seed) | mean rollouts | "
             "rollouts spent | zero-variance groups | rollouts / informative group | held-out Brier | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | {ms(s['final_acc'])} | {ms(s['best_acc'])} | {', '.join(fmt(x) for x in s['steps_to_target'])} | "
                     f"{'—' if s['steps_to_target_mean'] is None else format(s['steps_to_target_mean'], '.0f')} | "
                     f"{', '.join(fmt(x and int(x)) for x in s['rollouts_to_target'])} | {fmt(s['rollouts_to_target_mean'] and int(s['rollouts_to_target_mean']))} | "
                     f"{ms(s['rollouts_spent'], '{:.0f}')} | {ms(s['zero_variance_frac'], '{:.2f}')} | "
                     f"{ms(s['rollouts_per_effective_group'], '{:.1f}')} | {ms(s['heldout_brier']) if s['heldout_brier'] else '—'} | "
                     f"{s['wall_s'][0]:.0f} |")
    if "uniform" in summary and summary["uniform"]["steps_to_target_mean"]:
        u = summary["uniform"]
        lines += ["", "Ratios to uniform (mean steps / rollouts to target; > 1 = fewer than uniform):", "",
                  "| arm | steps: uniform / arm | rollouts: uniform / arm | rollouts: dynamic / arm |", "|---|---|---|---|"]
        d = summary.get("dynamic", {}).get("rollouts_to_target_mean")
        for arm, s in summary.items():
            if s["steps_to_target_mean"]:
                lines.append(f"| {arm} | {u['steps_to_target_mean'] / s['steps_to_target_mean']:.2f} | "
                             f"{u['rollouts_to_target_mean'] / s['rollouts_to_target_mean']:.2f} | "
                             + (f"{d / s['rollouts_to_target_mean']:.2f}" if d else "—") + " |")
    lines += ["", f"Distinct pool prompts sampled in {a.steps} steps (pool {len(prompts('train', parse_mix(a.pool), 0))}; mean over seeds) "
              "and the most groups any single prompt got:", "", "| arm | distinct prompts | max groups of one prompt |", "|---|---|---|"]
    lines += [f"| {arm} | {s['distinct_prompts'][0]:.0f} | {s['max_times_one_prompt'][0]:.0f} |" for arm, s in summary.items()]
    top = [r for r in results if "most_sampled" in r]
    if top:
        lines += ["", "The most sampled prompts and their successes (of G) each time they were sampled, first 8 → last 8 samplings:", "",
                  "| arm | seed | prompt | groups | successes |", "|---|---|---|---|---|"]
        for r in top:
            for m in r["most_sampled"][:3]:
                lines.append(f"| {r['arm']} | {r['seed']} | `{m['id']}` | {m['groups']} | "
                             f"{' '.join(map(str, m['successes'][:8]))} → {' '.join(map(str, m['successes'][-8:]))} |")
    digs = list(summary[arms[0]]["final_by_digits"])
    lines += ["", "Per digit count, mean over seeds: held-out greedy accuracy start → final; share of the sampled groups (dropped "
              "ones included) with that digit count, and their mean pass rate over training:", "",
              "| arm | " + " | ".join(f"{d}-digit acc" for d in digs) + " | " + " | ".join(f"{d}-digit share / pass" for d in digs) + " |",
              "|---|" + "---|" * (2 * len(digs))]
    for arm, s in summary.items():
        lines.append(f"| {arm} | " + " | ".join(f"{s['start_by_digits'][d]:.3f} → {ms(s['final_by_digits'][d])}" for d in digs) + " | "
                     + " | ".join(f"{s['sampled_share_by_digits'].get(d, 0):.2f} / {s['sampled_pass_by_digits'].get(d, 0):.2f}" for d in digs) + " |")
    steps_axis = summary[arms[0]]["curve_steps"]
    lines += ["", "Held-out accuracy, mean over seeds (per-seed curves in the JSON):", "",
              "| step | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for i, st in enumerate(steps_axis):
        lines.append(f"| {st} | " + " | ".join(f"{summary[arm]['curve_mean'][i]:.3f}" for arm in arms) + " |")
    cal = sorted([r for r in results if "heldout_brier" in r], key=lambda r: (arms.index(r["arm"]), r["seed"]))
    if cal:
        digs = list(cal[0]["heldout_by_digits"])
        lines += ["", f"Held-out calibration ({a.cal} digits:prompts never in the pool; predicted pass rate from the arm's final "
                  f"selector vs pass rate of {a.group} samples from its final policy), per seed:", "",
                  "| arm | seed | " + " | ".join(f"{d} digits pred / obs" for d in digs) + " | Brier | Brier of constant 0.5 |",
                  "|---|---|" + "---|" * (len(digs) + 2)]
        for r in cal:
            lines.append(f"| {r['arm']} | {r['seed']} | " + " | ".join(f"{v['pred']:.2f} / {v['obs']:.2f}" for v in r["heldout_by_digits"].values())
                         + f" | {r['heldout_brier']:.4f} | {r['heldout_brier_prior']:.4f} |")
    md = Path(a.out + ".md")
    old = md.read_text() if md.exists() else ""
    tail = old[old.index("\nCommand"):] if "\nCommand" in old else ""  # hand-written command + reading survive a re-run
    md.write_text("\n".join(lines) + "\n" + tail)
    Path(a.out + ".json").write_text(json.dumps({"args": vars(a), "target": target, "summary": summary, "runs": results}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(19, 4.2))
    colors = {arm: plt.get_cmap("tab20")(i % 20) for i, arm in enumerate(arms)}  # more arms than the default cycle
    for arm, rs in by_arm.items():
        s = summary[arm]
        for r in rs:
            ax[0].plot([c["step"] for c in r["curve"]], [c["accuracy"] for c in r["curve"]], color=colors[arm], alpha=0.25, lw=0.8)
            ax[1].plot([c["rollouts"] for c in r["curve"]], [c["accuracy"] for c in r["curve"]], color=colors[arm], alpha=0.25, lw=0.8)
        ax[0].plot(s["curve_steps"], s["curve_mean"], color=colors[arm], marker="o", ms=3, label=f"{arm} (mean of {len(rs)})")
        ax[1].plot(s["curve_rollouts_mean"], s["curve_mean"], color=colors[arm], marker="o", ms=3, label=arm)
        ax[3].plot(s["curve_steps"], [np.mean([r["curve"][i]["by_digits"]["3"] for r in rs]) for i in range(len(s["curve_steps"]))],
                   color=colors[arm], marker="o", ms=3, label=arm)
        tr = np.array([[t["zero_variance_frac"] for t in r["trace"]] for r in rs]).mean(0)
        ax[2].plot(np.arange(1, len(tr) + 1), tr, color=colors[arm], label=arm)
    for x, name in zip(ax[:2], ("training steps", "rollouts spent (incl. discarded)")):
        x.axhline(target, color="grey", ls=":", label="target")
        x.set_xlabel(name)
        x.set_ylabel(f"held-out accuracy, pool mix (greedy, n={n_eval})")
    ax[2].set_xlabel("training steps")
    ax[2].set_ylabel("zero-variance fraction of sampled groups (cumulative)")
    ax[0].legend(fontsize=8)
    ax[2].legend(fontsize=8)
    ax[3].set_xlabel("training steps")
    ax[3].set_ylabel("held-out 3-digit accuracy (greedy, mean over seeds)")
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
