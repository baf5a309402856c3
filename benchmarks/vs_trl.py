"""GRPO step speed: mentor's `RLStepper` against TRL's `GRPOTrainer`, side by side in one process.

Both train the same tiny model (the 1.06M-parameter Llama preset, briefly SFT-warmed by mentor on 3-digit addition so
that rewards vary and completions end with EOS; saved once, loaded by both), on the same procedural prompts (plain
text such as ``864+394=``, no chat template), with the same 0/1 reward (`mentor.evaluate.score_completion`, the
task verifier), the same group size G = 8, 8 prompts per step (64 completions), the same `max_new_tokens`
(48 and 128: two settings), AdamW at a constant lr, grad clip 1.0, fp32 on CPU.

A *step* is the same work on both sides: sample 64 completions, score them, compute group advantages, and take
exactly one optimizer step over all 64 (TRL: `per_device_train_batch_size=64`, `gradient_accumulation_steps=1`, so
`steps_per_generation=1` and `generation_batch_size=64`: one generation per optimizer step; `num_iterations=1`).
The loss is the same function: TRL `loss_type="grpo"` (per-sequence token mean, then mean over sequences) is
mentor's `grpo` with `seq_mean_token_mean`; advantages (R − mean_G) / (std_G + 1e-4) with Bessel std on both
(mentor `rl.adv_eps=1e-4` to match TRL's constant); β = 0 (no reference model on either side); token-level ratio,
ε = 0.2. The full mapping of settings is in docs/vs_trl.md; tests/integration/test_vs_trl_mapping.py checks that
both sides give the same advantages and the same gradient on one TRL-generated batch.

Timing. The two trainers run interleaved in one process: after warm-up steps on each side (not timed), TRL runs
`--block` steps, then mentor runs `--block` steps, and so on for `--rounds` rounds (a `TrainerCallback` runs mentor's
block at TRL's `on_step_end`). A TRL step is the wall time between two of its `on_step_end` calls minus the time the
callback spent on mentor (so it includes TRL's data loading, generation, scoring, forward/backward, clipping, the
optimizer and its bookkeeping); a mentor step is the wall time of `RLStepper.step`. Per-stage times: mentor's own
`time/sample` (generation + reward), `time/score` (collation, advantages), `time/learn` (forward, backward,
optimizer); for TRL, timers wrapped around `_generate` (generation + decoding), `_calculate_rewards` and
`_generate_and_score_completions` (all of the above plus padding and advantages); TRL's learn = step − that.
The reward function's own time is reported separately for both (it is the same function). Completion tokens are
counted as the generated tokens (EOS included) of the 64 completions; tokens/s = completion tokens / step time.
Each step also records the process CPU time (`time.process_time`, all threads): on a shared machine wall time
depends on other processes' load, CPU time much less, so both are reported.

How the two learners run the same loss differs: TRL pads the 64 completions to the longest one and runs them as one
micro-batch; mentor plans its micro-batches by length (`mentor.rl.length_buckets`, `optim.micro_batch_overhead_tokens`
at its default) within the same `optim.micro_batch_size=64` cap and skips rows without loss tokens. Both sum to one
gradient of the same batch (tests/unit/test_learner_speed.py checks that mentor's plan changes no numbers).

    nice -n 10 python benchmarks/vs_trl.py     # writes benchmarks/results/vs_trl.{json,md} (--stem to rename)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python benchmarks/vs_trl.py"
G, PROMPTS_PER_STEP = 8, 8


# ----------------------------------------------------------------------------- shared settings

def warm_start(out: Path, steps: int, seed: int) -> Path:
    """An SFT-warmed 1m model on 3-digit addition (mentor's own SFT recipe, cut short), cached under `out`;
    `steps=0`: the randomly initialised model, saved as is."""
    from mentor.config import load_config
    from mentor.models import build_tiny_model, build_tokenizer, save_model
    from mentor.train import train

    if steps == 0:
        path = out / f"init-seed{seed}"
        if not path.exists():
            tok = build_tokenizer()
            save_model(build_tiny_model(tok, "1m", seed=seed), tok, path)
        return path
    final = out / f"sft-{steps}-seed{seed}" / "final"
    if final.exists():
        return final
    shutil.rmtree(final.parent, ignore_errors=True)
    cfg = load_config(None, [
        "algo=sft", "model.path=tiny:1m", f"run.out_dir={final.parent}", f"run.seed={seed}", f"run.steps={steps}",
        "run.save_every=0", "run.progress=false", "eval.every=0", "data.task=add", "data.task_args={digits: 3}",
        "data.num_train=20000", "data.num_eval=16", "optim.lr=2e-3", "optim.warmup_steps=20", "optim.schedule=constant",
        "optim.batch_size=64", "optim.micro_batch_size=64", "sampling.max_new_tokens=48"])
    train(cfg)
    return final


def mentor_overrides(model_path: Path, max_new_tokens: int, lr: float, seed: int, out_dir: Path) -> list[str]:
    """mentor's side of the mapping (docs/vs_trl.md)."""
    return [
        "algo=grpo", f"model.path={model_path}", "model.dtype=float32", f"run.out_dir={out_dir}", f"run.seed={seed}",
        "run.progress=false", "eval.every=0", "data.task=add", "data.task_args={digits: 3}", "data.num_train=4096",
        "data.num_eval=16", f"optim.lr={lr}", "optim.schedule=constant", "optim.warmup_steps=0",
        "optim.weight_decay=0.0", "optim.betas=[0.9, 0.999]", f"optim.batch_size={PROMPTS_PER_STEP}",
        f"optim.micro_batch_size={PROMPTS_PER_STEP * G}", "optim.grad_clip=1.0", "sampling.temperature=1.0",
        "sampling.top_p=1.0", "sampling.top_k=0", f"sampling.max_new_tokens={max_new_tokens}", f"rl.group_size={G}",
        "rl.clip_eps_low=0.2", "rl.clip_eps_high=0.2", "rl.kl_coef=0.0", "rl.adv_eps=1e-4", "rl.std_ddof=1",
        "rl.aggregation=seq_mean_token_mean", "rl.ppo_epochs=1", "rl.minibatches=1"]


def trl_args(max_new_tokens: int, lr: float, seed: int, max_steps: int, out_dir: Path):
    """TRL's side of the mapping (docs/vs_trl.md)."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, fp16=False, seed=seed, data_seed=seed,
        per_device_train_batch_size=PROMPTS_PER_STEP * G, gradient_accumulation_steps=1, num_generations=G,
        num_iterations=1, max_completion_length=max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        repetition_penalty=1.0, loss_type="grpo", scale_rewards="group", importance_sampling_level="token",
        beta=0.0, epsilon=0.2, mask_truncated_completions=False, learning_rate=lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, optim="adamw_torch",
        max_grad_norm=1.0, max_steps=max_steps, logging_steps=10**9, save_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, log_completions=False)


def reward_fn_for(prompts, timer: dict[str, float] | None = None):
    """TRL reward function: the same 0/1 task verifier mentor's stepper calls, looked up by prompt text."""
    from mentor.evaluate import score_completion

    by_text = {p.text: p for p in prompts}

    def task_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        t = time.perf_counter()
        out = [float(score_completion(c, by_text[p])) for p, c in zip(prompts, completions)]
        if timer is not None:
            timer["reward"] = timer.get("reward", 0.0) + time.perf_counter() - t
        return out

    return task_reward


def build_mentor(overrides: list[str]):
    """The RL stepper exactly as `mentor.train.train` builds it."""
    from mentor.config import load_config
    from mentor.runs import seed_everything
    from mentor.train import load_policy, load_prompts, make_optimizer, make_scheduler, make_stepper, resolve_device

    cfg = load_config(None, overrides)
    device = resolve_device(cfg.run.device)
    seed_everything(cfg.run.seed)
    model, tokenizer = load_policy(cfg, device)
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim, 10**6)
    train_prompts, _ = load_prompts(cfg)
    return make_stepper(cfg, model, tokenizer, optimizer, scheduler, train_prompts, device), train_prompts


def build_trl(model_path: Path, prompts, args, timer: dict[str, float], reward_func=None):
    """TRL's trainer on the same saved model and the same prompt texts (a plain-text `prompt` column)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    data = Dataset.from_dict({"prompt": [p.text for p in prompts]})
    return GRPOTrainer(model=model, reward_funcs=reward_func or reward_fn_for(prompts, timer), args=args,
                       train_dataset=data, processing_class=tok)


# ----------------------------------------------------------------------------- instrumentation

def wrap_timed(obj, name: str, timer: dict[str, float], key: str, on_result=None) -> None:
    """Replace bound method `obj.name` by one that adds its wall time to `timer[key]`."""
    inner = getattr(obj, name)

    def timed(*a, **k):
        t = time.perf_counter()
        out = inner(*a, **k)
        timer[key] = timer.get(key, 0.0) + time.perf_counter() - t
        if on_result is not None:
            on_result(out)
        return out

    setattr(obj, name, timed)


def instrument_trl(trainer, timer: dict[str, float]) -> None:
    def count_tokens(out):  # _generate returns (prompt_ids, completion_ids, ...)
        timer["completion_tokens"] = timer.get("completion_tokens", 0) + sum(len(c) for c in out[1])
        timer["completions"] = timer.get("completions", 0) + len(out[1])

    def record_loss(loss):
        timer.setdefault("loss", []).append(float(loss.detach()))

    wrap_timed(trainer, "_generate", timer, "generate", count_tokens)
    wrap_timed(trainer, "_calculate_rewards", timer, "rewards_call")
    wrap_timed(trainer, "_generate_and_score_completions", timer, "prepare")
    wrap_timed(trainer, "compute_loss", timer, "forward", record_loss)


def instrument_mentor(stepper, timer: dict[str, float]) -> None:
    wrap_timed(stepper.rewards, "score", timer, "reward")


def trl_reward_mean(trainer) -> float:
    return float(trainer._metrics["train"]["reward"][-1])


# ----------------------------------------------------------------------------- one setting

def run_setting(model_path: Path, max_new_tokens: int, *, lr: float, seed: int, warmup: int, rounds: int, block: int,
                work: Path) -> dict[str, Any]:
    from transformers import TrainerCallback

    m_timer: dict[str, float] = {}
    t_timer: dict[str, Any] = {}
    stepper, prompts = build_mentor(mentor_overrides(model_path, max_new_tokens, lr, seed, work / "mentor"))
    instrument_mentor(stepper, m_timer)
    total = warmup + rounds * block
    trainer = build_trl(model_path, prompts, trl_args(max_new_tokens, lr, seed, total, work / "trl"), t_timer)
    instrument_trl(trainer, t_timer)
    mentor_rows: list[dict[str, Any]] = []
    trl_rows: list[dict[str, Any]] = []

    def mentor_step(i: int, timed: bool, rnd: int) -> None:
        m_timer.clear()
        t, c = time.perf_counter(), time.process_time()
        m = stepper.step(i)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if timed:
            mentor_rows.append({
                "round": rnd, "seconds": dt, "cpu_seconds": dc, "completion_tokens": m["sampled_tokens"], "loss": m["loss"],
                "reward": m["reward/mean"], "mean_length": m["response_length/mean"], "truncated": m["truncated"],
                "sample": m["time/sample"], "score": m["time/score"], "learn": m["time/learn"],
                "reward_fn": m_timer.get("reward", 0.0), "grad_norm": m["grad_norm"]})

    class Interleave(TrainerCallback):
        def __init__(self):
            self.mark = self.cpu_mark = None
            self.mentor_done = 0

        def on_train_begin(self, args, state, control, **kw):
            t_timer.clear()
            self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            dt, dc = time.perf_counter() - self.mark, time.process_time() - self.cpu_mark
            s = state.global_step
            if s > warmup:
                n = t_timer.get("completions", 0)
                assert n == PROMPTS_PER_STEP * G, f"TRL step {s} generated {n} completions, expected {PROMPTS_PER_STEP * G}"
                trl_rows.append({
                    "round": (s - warmup - 1) // block, "seconds": dt, "cpu_seconds": dc, "completion_tokens": t_timer["completion_tokens"],
                    "loss": t_timer["loss"][-1], "reward": trl_reward_mean(trainer),
                    "mean_length": t_timer["completion_tokens"] / n,
                    "sample": t_timer["generate"] + t_timer["rewards_call"],
                    "score": t_timer["prepare"] - t_timer["generate"] - t_timer["rewards_call"],
                    "learn": dt - t_timer["prepare"], "reward_fn": t_timer.get("reward", 0.0)})
            if s == warmup or (s > warmup and (s - warmup) % block == 0 and s < total):
                # mentor: warm-up steps once, then one block after each of TRL's blocks
                k = warmup if s == warmup else block
                rnd = -1 if s == warmup else (s - warmup) // block - 1
                for _ in range(k):
                    self.mentor_done += 1
                    mentor_step(self.mentor_done, timed=s != warmup, rnd=rnd)
            if s == total:  # the last mentor block after TRL's last block
                for _ in range(block):
                    self.mentor_done += 1
                    mentor_step(self.mentor_done, timed=True, rnd=rounds - 1)
            t_timer.clear()
            self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    trainer.add_callback(Interleave())
    if warmup == 0:
        raise ValueError("--warmup must be >= 1 (first steps include one-time set-up costs)")
    trainer.train()
    return {"max_new_tokens": max_new_tokens, "mentor": summarize(mentor_rows), "trl": summarize(trl_rows),
            "mentor_steps": mentor_rows, "trl_steps": trl_rows, "ratio": ratios(mentor_rows, trl_rows, rounds)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    secs = [r["seconds"] for r in rows]
    tokens = sum(r["completion_tokens"] for r in rows)
    q = statistics.quantiles(secs, n=4) if len(secs) > 1 else [secs[0]] * 3
    out = {"steps": len(rows), "s_per_step_median": statistics.median(secs), "s_per_step_mean": statistics.fmean(secs),
           "s_per_step_q1": q[0], "s_per_step_q3": q[2], "completion_tokens_per_s": tokens / sum(secs),
           "mean_completion_length": tokens / (PROMPTS_PER_STEP * G * len(rows)), "reward_mean": statistics.fmean(r["reward"] for r in rows),
           "abs_loss_max": max(abs(r["loss"]) for r in rows),
           "cpu_s_per_step_median": statistics.median(r["cpu_seconds"] for r in rows)}
    for k in ("sample", "score", "learn", "reward_fn"):
        out[f"time/{k}"] = statistics.fmean(r[k] for r in rows)
    return out


def ratios(mentor_rows, trl_rows, rounds: int) -> dict[str, Any]:
    """TRL ÷ mentor seconds per step (> 1: mentor faster), overall and per interleaved round (the noise)."""
    per_round = []
    for r in range(rounds):
        m = statistics.fmean(x["seconds"] for x in mentor_rows if x["round"] == r)
        t = statistics.fmean(x["seconds"] for x in trl_rows if x["round"] == r)
        per_round.append(t / m)
    ms, ts = [x["seconds"] for x in mentor_rows], [x["seconds"] for x in trl_rows]
    mt = sum(x["completion_tokens"] for x in mentor_rows) / sum(ms)
    tt = sum(x["completion_tokens"] for x in trl_rows) / sum(ts)
    cpu = statistics.median(x["cpu_seconds"] for x in trl_rows) / statistics.median(x["cpu_seconds"] for x in mentor_rows)
    return {"s_per_step_median": statistics.median(ts) / statistics.median(ms), "tokens_per_s": mt / tt, "cpu_s_per_step_median": cpu,
            "per_round": per_round, "per_round_min": min(per_round), "per_round_max": max(per_round)}


# ----------------------------------------------------------------------------- report

def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# GRPO step speed: mentor vs TRL `GRPOTrainer` (CPU)", "",
        f"Command: `{result['command']}`  ",
        *([f"{result['note']}  "] if result.get("note") else []),
        f"Machine: {env['machine']}, torch {env['torch']} ({env['threads']} threads, fp32), transformers "
        f"{env['transformers']}, trl {env['trl']}; load average {env['loadavg_start']} at start, "
        f"{env['loadavg_end']} at the end (a shared machine: compare only within this run).  ",
        "Model: 1.06M-parameter Llama preset, " + (f"SFT-warmed {result['sft_steps']} steps on 3-digit addition; "
                                                   if result["sft_steps"] else "randomly initialised (`--sft-steps 0`); ") +
        f"{PROMPTS_PER_STEP} prompts × G={G} = {PROMPTS_PER_STEP * G} completions and one AdamW step per step; "
        f"lr {result['lr']}; {result['warmup']} warm-up steps per side excluded; {result['rounds']} interleaved rounds "
        f"of {result['block']} steps per side.", "",
        "| max new tokens | side | s/step median [q1, q3] | CPU s/step median | completion tok/s | mean length | sample "
        "| score | learn | of which reward fn | reward mean | max \\|loss\\| |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["settings"]:
        for side in ("mentor", "trl"):
            x = s[side]
            lines.append(
                f"| {s['max_new_tokens']} | {side} | {x['s_per_step_median']:.3f} [{x['s_per_step_q1']:.3f}, "
                f"{x['s_per_step_q3']:.3f}] | {x['cpu_s_per_step_median']:.3f} | {x['completion_tokens_per_s']:.0f} | {x['mean_completion_length']:.1f} | "
                f"{x['time/sample']:.3f} | {x['time/score']:.3f} | {x['time/learn']:.3f} | {x['time/reward_fn']:.3f} | "
                f"{x['reward_mean']:.3f} | {x['abs_loss_max']:.1e} |")
    lines += ["", "| max new tokens | TRL ÷ mentor, s/step (median) | per-round range | TRL ÷ mentor, CPU s/step "
              "| mentor ÷ TRL, tokens/s |", "|---|---|---|---|---|"]
    for s in result["settings"]:
        r = s["ratio"]
        lines.append(f"| {s['max_new_tokens']} | **{r['s_per_step_median']:.2f}×** | {r['per_round_min']:.2f}–"
                     f"{r['per_round_max']:.2f}× | {r['cpu_s_per_step_median']:.2f}× | {r['tokens_per_s']:.2f}× |")
    lines += ["", "Stage times are means in seconds per step. mentor: `time/sample` (generation + reward), `time/score` "
              "(collation, advantages), `time/learn` (forward, backward, optimizer). TRL: sample = `_generate` + "
              "`_calculate_rewards`, score = the rest of `_generate_and_score_completions`, learn = the rest of the "
              "step. Loss: both objectives are exactly 0 on-policy at the first iteration (group advantages sum to 0, "
              "ratio 1), so |loss| is float rounding. CPU s/step is the process CPU time (all threads, `time.process_time`): "
              "less sensitive than wall time to other processes on a shared machine. Settings mapping: docs/vs_trl.md.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-new-tokens", type=int, nargs="+", default=[48, 128])
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--block", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("runs/vs_trl"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--stem", default="vs_trl", help="results file names: OUT/STEM.{json,md}")
    ap.add_argument("--note", default="", help="a line for the Markdown report (what changed since earlier results)")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    from mentor.runs import quiet_transformers

    quiet_transformers()
    load_start = os.getloadavg()
    model_path = warm_start(args.cache, args.sft_steps, args.seed)
    settings: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for L in args.max_new_tokens:
        with tempfile.TemporaryDirectory() as work:
            res = run_setting(model_path, L, lr=args.lr, seed=args.seed, warmup=args.warmup, rounds=args.rounds,
                              block=args.block, work=Path(work))
        settings.append(res)
        r = res["ratio"]
        print(f"max_new_tokens={L}: mentor {res['mentor']['s_per_step_median']:.3f} s/step, "
              f"TRL {res['trl']['s_per_step_median']:.3f} s/step → TRL/mentor {r['s_per_step_median']:.2f}× "
              f"(rounds {r['per_round_min']:.2f}–{r['per_round_max']:.2f}), tokens/s ratio {r['tokens_per_s']:.2f}×",
              flush=True)
        write_results(args, load_start, settings)  # after every setting: a killed run keeps what it measured


def write_results(args, load_start, settings: list[dict[str, Any]]) -> None:
    import transformers
    import trl

    result = {
        "command": COMMAND + ("" if len(os.sys.argv) == 1 else " " + shlex.join(os.sys.argv[1:])),
        "environment": {"machine": f"{platform.machine()} CPU ({os.cpu_count()} cores)", "torch": torch.__version__,
                        "transformers": transformers.__version__, "trl": trl.__version__, "threads": args.threads,
                        "loadavg_start": [round(x, 1) for x in load_start],
                        "loadavg_end": [round(x, 1) for x in os.getloadavg()]},
        "sft_steps": args.sft_steps, "lr": args.lr, "warmup": args.warmup, "rounds": args.rounds, "block": args.block,
        "group_size": G, "prompts_per_step": PROMPTS_PER_STEP, "note": args.note, "settings": settings}
    (args.out / f"{args.stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{args.stem}.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
