"""`mentor control train|eval` — DR.Q, MR.Q and TD3 on gymnasium MuJoCo and DMC tasks.

    mentor control train --env Gym-HalfCheetah-v5 --algo drq --seed 0 --steps 1000000 --out runs/hc-drq
    mentor control train --resume runs/hc-drq            # continue a killed run from its newest checkpoint
    mentor control train --env Gym-Hopper-v5 --algo mrq --set infonce_weight=0.1   # one DR.Q flag on MR.Q
    mentor control eval runs/hc-drq --episodes 10
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path


def _parse_value(text: str):
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"mentor control: --set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def build_parser() -> argparse.ArgumentParser:
    from .loop import ALGOS

    p = argparse.ArgumentParser(prog="mentor control", description="Continuous control: DR.Q, MR.Q (presets of one agent) and TD3.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one agent; writes a run directory with metrics, curves and checkpoints")
    t.add_argument("--env", help="Gym-HalfCheetah-v5 | <gymnasium id> | Dmc-cheetah-run | Dmc-visual-walker-run")
    t.add_argument("--algo", choices=ALGOS, default="drq")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=None, help="environment steps (default 1M; with --resume: the saved value)")
    t.add_argument("--eval-every", type=int, default=5_000)
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--random-steps", type=int, default=None, help="random-action warm-up (default: 10k MR.Q/DR.Q, 25k TD3)")
    t.add_argument("--checkpoint-every", type=int, default=None, help="default: every evaluation; 0: only at the end")
    t.add_argument("--no-replay-in-checkpoint", action="store_true", help="smaller checkpoints that cannot be resumed")
    t.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="hyperparameter override, e.g. --set infonce_weight=0.1 --set batch_size=128")
    t.add_argument("--out", help="run directory (default runs/control/<env>-<algo>-s<seed>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (optionally with a larger --steps)")
    e = sub.add_parser("eval", help="evaluate a run's newest checkpoint with the deterministic policy")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=None, help="evaluation environment seed (default: the run's seed + 100)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _train(args) -> int:
    from .loop import TrainConfig, Trainer

    if args.resume:
        run_dir = Path(args.resume)
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            raise SystemExit(f"mentor control train --resume: {cfg_path} not found")
        saved = json.loads(cfg_path.read_text())["train"]
        if args.steps is not None:
            saved["steps"] = args.steps
        cfg = TrainConfig(**saved)
    else:
        if not args.env:
            raise SystemExit("mentor control train: give --env (or --resume RUN_DIR)")
        cfg = TrainConfig(env=args.env, algo=args.algo, seed=args.seed, steps=args.steps or 1_000_000, eval_every=args.eval_every,
                          eval_episodes=args.eval_episodes, random_steps=args.random_steps,
                          checkpoint_every=args.checkpoint_every, keep_replay=not args.no_replay_in_checkpoint,
                          threads=args.threads, overrides=parse_overrides(args.overrides))
        run_dir = Path(args.out or f"runs/control/{cfg.env}-{cfg.algo}-s{cfg.seed}")
    trainer = Trainer(cfg, run_dir, resume=bool(args.resume))
    trainer.run()
    last = trainer.evals[-1]["return_mean"] if trainer.evals else float("nan")
    print(f"done: {run_dir} — {trainer.step} steps, last evaluation {last:.1f}")
    return 0


def _eval(args) -> int:
    from .loop import evaluate_run

    res = evaluate_run(args.run_dir, args.episodes, args.seed)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['env']} {res['algo']} ({res['checkpoint']}): {res['return_mean']:.1f} ± {res['return_std']:.1f} "
              f"over {len(res['returns'])} episodes")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "eval": _eval}[args.cmd](args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        print(f"mentor control {args.cmd}: error: {e}", file=sys.stderr)
        return 2
