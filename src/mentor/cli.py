"""`mentor` command line: one sub-command per verb of DESIGN.md §1.

Sub-commands that own a whole area (`data`, `control`) hand their argument list to that area's own
`cli.main(argv)`, so each area keeps its parser next to its code. Heavy imports happen inside commands.
"""

from __future__ import annotations

import argparse
import sys


def _train(args) -> int:
    from .config import load_config
    from .train import train

    overrides = list(args.overrides)
    if args.recipe and "=" in args.recipe and not args.recipe.endswith((".yaml", ".yml")):
        overrides.insert(0, args.recipe)  # `mentor train key=value ...` with no recipe file
        args.recipe = None
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.resume:
        from pathlib import Path

        cfg = load_config(Path(args.resume) / "config.yaml", overrides)
        train(cfg, resume=True)
        return 0
    if not args.recipe and not overrides:
        raise SystemExit("mentor train: give a RECIPE.yaml and/or key=value overrides (or --resume RUN_DIR)")
    cfg = load_config(args.recipe, overrides)
    train(cfg, resume=False)
    return 0


def _eval(args) -> int:
    from .evaluate import eval_command

    return eval_command(args)


def _report(args) -> int:
    from .report import write_report

    out = write_report(args.run_dir)
    print(f"report: {out}")
    return 0


def _quickstart(args) -> int:
    from .quickstart import quickstart

    quickstart(out=args.out, fast=args.fast)
    return 0


# Sub-commands that own a whole area: `mentor NAME ARGS...` is `MODULE.main(ARGS)`.
DELEGATED = {
    "data": ("mentor.lineage.cli", "dataset lineage, contamination, quality score, curation (ATLAS)"),
    "control": ("mentor.control.cli", "continuous control: DR.Q, MR.Q, TD3"),
    "analyze": ("mentor.analysis", "parameter dynamics across checkpoints: `mentor analyze updates RUN_DIR`"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mentor", description="Post-training language models with RL and on-policy distillation.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run a training recipe (sft, grpo-family, lpo, opd, ...); resumable")
    t.add_argument("recipe", nargs="?", help="recipe YAML (configs/*.yaml); optional when overrides give everything")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its newest complete checkpoint")
    t.add_argument("--out", help="run directory (same as run.out_dir=...)")
    t.set_defaults(fn=_train)

    e = sub.add_parser("eval", help="pass@k / mean@k / lengths / per-domain accuracy of a model")
    e.add_argument("model", help="HF directory, hub id, or tiny:PRESET")
    e.add_argument("--task", help="procedural task name (see mentor.tasks.TASKS)")
    e.add_argument("--task-args", default="", help="comma-separated key=value, e.g. digits=3")
    e.add_argument("--data", help="JSONL / Parquet / dataset dir / hub id")
    e.add_argument("--split", default="test")
    e.add_argument("--fields", default="", help="column mapping, e.g. prompt=question,answer=answer (see FieldMap)")
    e.add_argument("--template", default="{prompt}", help="prompt template, e.g. '{prompt}\\nAnswer in \\boxed{}.'")
    e.add_argument("--verifier", default=None, help="exact | math | task | code (default: per row, or the task's)")
    e.add_argument("--n", type=int, default=256, help="number of prompts")
    e.add_argument("--k", type=int, default=1, help="samples per prompt (pass@k for every k' <= k is reported)")
    e.add_argument("--greedy", action="store_true", help="greedy decoding (k is then 1)")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--max-new-tokens", type=int, default=128)
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--out", help="write per-item results (JSONL) and the summary (JSON) here")
    e.add_argument("--device", default="cpu")
    e.add_argument("--allocate", metavar="gps:CKPT", help="test-time allocation: spend --budget samples per prompt on "
                   "average, unevenly by the GPS predictor of a training checkpoint, and compare with uniform allocation")
    e.add_argument("--budget", type=int, default=4, help="with --allocate: mean samples per prompt")
    e.set_defaults(fn=_eval)

    r = sub.add_parser("report", help="plots and a Markdown summary from a run directory")
    r.add_argument("run_dir")
    r.set_defaults(fn=_report)

    q = sub.add_parser("quickstart", help="tiny model, procedural task, training and report on CPU in minutes")
    q.add_argument("--out", default="runs/quickstart")
    q.add_argument("--fast", action="store_true", help="a seconds-long smoke version (used by the tests)")
    q.set_defaults(fn=_quickstart)

    for name, (_, help_) in DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)  # listed in --help; parsed by the area's own cli
    return p


def main(argv: list[str] | None = None) -> int:
    import importlib

    from .config import ConfigError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    from .tasks.data import DataError

    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"mentor: config error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"mentor: data error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
