"""`mentor data compose`: write composed (Composition-RL) datasets with provenance (specs/composition.md R1, R3).

    mentor data compose --task add --task-args '{"digits": 3}' --depth 2 --n 100 --out composed.jsonl
    mentor data compose --input gsm8k.jsonl --prompt-field question --first-task mod --depth 2 --out x.jsonl

The second pool gives the last problem (answer, verifier) of every chain; `--first-*` gives a different first pool
(cross-domain), else the same pool is used. Rows are `composition.row_of` (read back with `read_composed`); a ledger
``OUT.ledger.json`` records the arguments, the counts and the skips by reason. Kept apart from `composition` so that
`mentor data --help` does not import sympy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError


def _pool_from_args(task: str | None, task_args: str, path: str | None, prompt_field: str, verifier: str, n: int,
                    seed: int, split: str, where: str) -> list:
    from .composition import load_pool

    if bool(task) == bool(path):
        raise ValueError(f"give exactly one of --{where}task or --{where}input")
    if task:
        try:
            targs = json.loads(task_args)
        except json.JSONDecodeError as e:
            raise ValueError(f"--{where}task-args: invalid JSON ({e.msg})") from None
        return load_pool({"task": task, "task_args": targs, "n": n, "seed": seed, "split": split}, f"--{where}task")
    return load_pool({"path": path, "verifier": verifier, "prompt_field": prompt_field}, f"--{where}input")


def add_arguments(p: argparse.ArgumentParser) -> None:
    for pre, what in (("", "second problems (the answers of the composed rows)"), ("first-", "first problems (cross-domain; default: the same pool)")):
        g = p.add_argument_group(what)
        g.add_argument(f"--{pre}task", help="procedural task name (mentor.tasks)")
        g.add_argument(f"--{pre}task-args", default="{}", help="task knobs as JSON, e.g. '{\"digits\": 3}'")
        g.add_argument(f"--{pre}input", help="dataset file (JSONL / Parquet / directory)")
        g.add_argument(f"--{pre}prompt-field", default="prompt", help="prompt column of the dataset")
        g.add_argument(f"--{pre}verifier", default="math", help="verifier of dataset rows (default math)")
        g.add_argument(f"--{pre}pool-size", type=int, default=200, help="procedural pool size (default 200)")
    p.add_argument("--split", default="train", help="procedural split: train | eval (default train)")
    p.add_argument("--depth", type=int, default=2, help="problems per chain (default 2)")
    p.add_argument("--n", type=int, default=100, help="composed rows to write (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", default="words", choices=["words", "compact"])
    p.add_argument("--rewrite-endpoint", default="", help="OpenAI-compatible URL for the optional LLM rewrite")
    p.add_argument("--rewrite-model", default="default")
    p.add_argument("--out", required=True, help="output JSONL (a ledger OUT.ledger.json is written beside it)")


def run(a) -> int:
    from ..runs import atomic_write_text
    from .composition import CompositionConfig, ComposeConfig, RewriteConfig, compose_dataset, row_of

    second = _pool_from_args(a.task, a.task_args, a.input, a.prompt_field, a.verifier, a.pool_size, a.seed, a.split, "")
    if a.first_task or a.first_input:
        first = _pool_from_args(a.first_task, a.first_task_args, a.first_input, a.first_prompt_field, a.first_verifier,
                                a.first_pool_size, a.seed, a.split, "first-")
    else:
        first = second
    cfg = CompositionConfig(compose=ComposeConfig(style=a.style),
                            rewrite=RewriteConfig(endpoint=a.rewrite_endpoint, model=a.rewrite_model))
    rows, skips = compose_dataset(second, first, a.depth, a.n, a.seed, cfg)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(row_of(p)) + "\n" for p in rows))
    ledger = {"args": {k: v for k, v in vars(a).items() if k != "run"}, "written": len(rows), "requested": a.n,
              "second_pool": len(second), "first_pool": len(first), "skips": dict(sorted(skips.items()))}
    atomic_write_text(Path(f"{out}.ledger.json"), json.dumps(ledger, indent=1))
    print(f"wrote {len(rows)} depth-{a.depth} compositions to {out}; skipped: {dict(sorted(skips.items())) or 'none'}")
    return 0 if rows else 1


def compose_main(argv: list[str] | None = None) -> int:
    """`python -m mentor.tasks.compose_cli ...` (same as `mentor data compose ...`)."""
    p = argparse.ArgumentParser(prog="mentor data compose", description="write composed (Composition-RL) datasets")
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        return run(a)
    except (ValueError, ConfigError, FileNotFoundError) as e:
        print(f"mentor data compose: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(compose_main())
