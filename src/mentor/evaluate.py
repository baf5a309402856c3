"""Evaluation: pass@k (unbiased estimator), mean@k, lengths and per-domain accuracy, greedy or sampled.

`evaluate(model, tokenizer, prompts, ...)` samples k completions per prompt with mentor's sampler, scores each
with the prompt's verifier, and returns a summary plus per-item records. The per-item records (`--out`) are
what `mentor data score` (ATLAS) reads: one JSON object per prompt with `id`, `correct` (one bool per sample)
and `pass_rate`.

pass@k uses the unbiased estimator of Chen et al. 2021 (HumanEval): with n samples of which c are correct,
pass@k = 1 − C(n−c, k) / C(n, k), averaged over prompts; mean@k is the mean correctness of all samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .types import Prompt


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (requires k <= n)."""
    if k > n:
        raise ValueError(f"pass@k: k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


@dataclass
class EvalResult:
    summary: dict[str, Any]
    items: list[dict[str, Any]]


def score_completion(completion: str, prompt: Prompt) -> float:
    """Reward in [0, 1] from the prompt's verifier (malformed output scores 0). An unknown verifier is an error; a
    verifier that itself raises propagates — callers that must not stop (training, evaluation) use `RewardGuard`."""
    from .verifiers import VERIFIERS

    if prompt.verifier not in VERIFIERS:
        raise ValueError(f"prompt {prompt.id!r}: unknown verifier {prompt.verifier!r}; choose one of {sorted(VERIFIERS)}")
    return float(VERIFIERS[prompt.verifier](completion, prompt))


class RewardGuard:
    """Rewards through the prompts' verifiers for code that must not stop (training, evaluation): a verifier that
    raises or returns a non-finite value scores 0 and is counted in `errors`; the first five are printed."""

    def __init__(self, where: str):
        self.where, self.errors = where, 0

    def score(self, completion: str, prompt: Prompt) -> float:
        try:
            r = score_completion(completion, prompt)
        except Exception as e:
            return self._bad(prompt, f"raised on prompt {prompt.id!r}: {type(e).__name__}: {e}")
        return self.check(r, prompt)

    def check(self, r: float, prompt: Prompt) -> float:
        """A reward computed elsewhere (e.g. batched code execution), passed through the same non-finite rule."""
        return float(r) if math.isfinite(r) else self._bad(prompt, f"returned {r} on prompt {prompt.id!r}")

    def _bad(self, prompt: Prompt, what: str) -> float:
        self.errors += 1
        if self.errors <= 5:
            print(f"[{self.where}] verifier {prompt.verifier!r} {what}; reward 0")
        return 0.0


def evaluate(model, tokenizer, prompts: list[Prompt], *, k: int = 1, greedy: bool = True, temperature: float = 1.0,
             max_new_tokens: int = 128, template: str = "{prompt}", batch_size: int = 256, seed: int = 0,
             stop: list[str] | None = None) -> EvalResult:
    from .config import SamplingConfig
    from .sampling import HFSampler

    if greedy:
        k = 1
    was_training = model.training
    model.eval()
    sampler = HFSampler(model, tokenizer, SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens,
                                                         stop=list(stop or []), batch_size=batch_size))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        groups = sampler.generate(prompts, n=k, greedy=greedy, generator=gen, template=template)
    if was_training:
        model.train()

    items, guard = [], RewardGuard("eval")
    for p, rollouts in zip(prompts, groups):
        texts = [r.text or tokenizer.decode(r.completion_ids, skip_special_tokens=True) for r in rollouts]
        rewards = [guard.score(t, p) for t in texts]
        items.append({
            "id": p.id, "domain": p.domain, "source": p.source, "answer": p.answer, "prompt": p.text,
            "completions": texts, "rewards": rewards, "correct": [r >= 1.0 for r in rewards],
            "pass_rate": float(np.mean([r >= 1.0 for r in rewards])),
            "lengths": [r.length for r in rollouts], "finish": [r.finish_reason for r in rollouts],
        })
    summary = summarise(items, k)
    if guard.errors:
        summary["verifier_errors"] = guard.errors
    return EvalResult(summary, items)


def summarise(items: list[dict[str, Any]], k: int) -> dict[str, Any]:
    if not items:
        return {"n": 0}
    lengths = np.array([n for it in items for n in it["lengths"]], dtype=float)
    correct = [it["correct"] for it in items]
    out: dict[str, Any] = {
        "n": len(items), "k": k,
        "accuracy": float(np.mean([c for cs in correct for c in cs])),  # mean@k
        "reward": float(np.mean([r for it in items for r in it["rewards"]])),
        "length/mean": float(lengths.mean()), "length/p50": float(np.percentile(lengths, 50)),
        "length/p90": float(np.percentile(lengths, 90)), "length/max": float(lengths.max()),
        "truncated": float(np.mean([f != "stop" for it in items for f in it["finish"]])),
    }
    kk = 1
    while kk <= k:
        out[f"pass@{kk}"] = float(np.mean([pass_at_k(len(cs), sum(cs), kk) for cs in correct]))
        kk *= 2
    if k not in (2 ** i for i in range(20)):
        out[f"pass@{k}"] = float(np.mean([pass_at_k(len(cs), sum(cs), k) for cs in correct]))
    domains = sorted({it["domain"] for it in items if it["domain"]})
    if len(domains) > 1:
        for d in domains:
            out[f"accuracy/{d}"] = float(np.mean([c for it in items if it["domain"] == d for c in it["correct"]]))
    return out


def _parse_task_args(s: str, flag: str = "--task-args") -> dict[str, Any]:
    import yaml

    out = {}
    for part in filter(None, s.split(",")):
        if "=" not in part:
            raise ValueError(f"{flag}: expected key=value, got {part!r}")
        key, val = part.split("=", 1)
        out[key.strip()] = yaml.safe_load(val)
    return out


def _allocate_command(args, model, tokenizer, prompts) -> int:
    """`mentor eval ... --allocate gps:RUN/ckpt/step_N --budget B`: pass@budget, predicted vs uniform allocation."""
    import yaml

    from .selection.allocate import allocate_and_eval, load_predictor

    kind, _, ckpt = args.allocate.partition(":")
    if kind != "gps" or not ckpt:
        raise SystemExit("mentor eval: --allocate takes gps:CHECKPOINT_DIR (a GPS run's ckpt/step_N)")
    run_cfg = Path(ckpt).resolve().parents[1] / "config.yaml"
    selector_args = yaml.safe_load(run_cfg.read_text()).get("rl", {}).get("selector_args", {}) if run_cfg.exists() else {}
    res = allocate_and_eval(model, tokenizer, prompts, args.budget * len(prompts), load_predictor(ckpt, selector_args),
                            max_new_tokens=args.max_new_tokens, template=args.template, seed=args.seed,
                            temperature=args.temperature)
    print(json.dumps(res, indent=2, default=str))
    if args.out:
        from .runs import atomic_write_text

        atomic_write_text(Path(args.out) / "allocation.json", json.dumps(res, indent=2, default=str))
    return 0


def eval_command(args) -> int:
    """`mentor eval MODEL --task NAME | --data PATH`."""
    from .models import load_model, load_tokenizer

    if bool(args.task) == bool(args.data):
        raise SystemExit("mentor eval: give exactly one of --task or --data")
    if args.task:
        from .tasks import make_prompts

        prompts = make_prompts(args.task, args.n, args.seed, "eval", **_parse_task_args(args.task_args))
    else:
        from .tasks.data import load_rows

        from .config import FieldMap, from_dict

        fields = from_dict(FieldMap, {k: v for k, v in _parse_task_args(args.fields, "--fields").items()}, "--fields")
        prompts = load_rows(args.data, split=args.split, fields=fields, verifier=args.verifier or "exact", limit=args.n)
    if args.verifier:
        import dataclasses

        prompts = [dataclasses.replace(p, verifier=args.verifier) for p in prompts]
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, device=args.device, tokenizer=tokenizer)
    if args.allocate:
        return _allocate_command(args, model, tokenizer, prompts)
    res = evaluate(model, tokenizer, prompts, k=args.k, greedy=args.greedy, temperature=args.temperature,
                   max_new_tokens=args.max_new_tokens, seed=args.seed, template=args.template)
    print(json.dumps(res.summary, indent=2))
    if args.out:
        from .runs import atomic_write_text

        out = Path(args.out)
        atomic_write_text(out / "items.jsonl", "".join(json.dumps(it) + "\n" for it in res.items))
        atomic_write_text(out / "summary.json", json.dumps(res.summary, indent=2))
        print(f"wrote {out / 'items.jsonl'} and {out / 'summary.json'}")
    return 0
