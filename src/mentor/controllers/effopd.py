"""EffOPD: validated extrapolation of the weights along the update direction (specs/effopd.md).

Paper: Cai, Cao, …, Fang, "Learning to Foresee: Unveiling the Unlocking Efficiency of On-Policy Distillation",
https://arxiv.org/abs/2605.11739, §4.1; official code https://github.com/caiyuchen-ustc/EffOPD
(`verl/workers/fsdp_workers.py`: `_iterative_test_and_modify`, `_apply_parameter_modification`,
`_update_base_params`).

The variant implemented (the code's, with the paper's `≥` as an option)::

    anchor W_a ← W_0 (the starting weights)
    after optimizer step t, when t is a power of two (t = 1, 2, 4, 8, …):
        Δ = W_t − W_a                                  # selected parameters only, fp32 arithmetic
        W_acc, v_acc = W_t, V(W_t)
        for k = 1..K:                                  # K = max_candidates (5)
            W_k = W_t + 2k·Δ                            # cumulative (2k+1)·Δ from the anchor: 3, 5, 7, 9, 11
            v_k = V(W_k)
            if accept(v_k, v_acc): W_acc, v_acc = W_k, v_k   # `strict`: v_k > v_acc (code); `geq`: v_k ≥ v_acc (paper)
            else: break                                # first failure ends the search
        load W_acc                                     # W_t itself, bit for bit, when k = 1 already fails
        W_a ← W_acc                                    # the anchor moves to the accepted weights (code)

V is the mean score of the student's sampled completions on a validation set drawn once from the training
prompts (`val_size` = 50 in the paper; one completion per prompt at the training temperature as in the code),
scored by the prompts' verifiers (`val_score: verifier`), or — for tasks without a verifier — by the fraction of
completion positions where the student's argmax token equals the teacher's (`val_score: teacher_agreement`,
our design). Parameters touched: names containing any of the code's keywords (`attn`, `self_attn`, `attention`,
`q_proj`, `k_proj`, `v_proj`, `o_proj`, `mlp`, `ffn`, `gate_proj`, `up_proj`, `down_proj`); substring matching
also catches `post_attention_layernorm` and `q_norm`/`k_norm` exactly as the code does (`param_filter:
linear_only` excludes norm layers). Embeddings and the LM head never move. Optimizer moments, the optimizer step
count and the LR schedule are untouched by a jump (as in the code).

Departures and gaps filled (ours):

- The anchor is this controller's own frozen copy of the selected parameters (CPU, parameter dtype). In the
  official code the anchor doubles as G-OPD's reference model, so extrapolation also moves πref when λ ≠ 1; here
  the G-OPD reference (`distill.reference`) is never touched.
- Trigger with several optimizer steps per training step (`rl.ppo_epochs × rl.minibatches > 1`): the controller
  runs after the training step, so it searches after the training step during which the global optimizer step
  count (the LR scheduler's step count) reached a power of two. With one optimizer step per training step (the
  OPD default) this is exactly the paper's t = 2^n.
- Validation sampling uses the controller's own `torch.Generator` (seeded from the run seed, saved in the
  checkpoint), so training randomness is unchanged by the searches and a resumed run repeats the same decisions.
  `val_seed_mode: fresh` (the code: a new sample per evaluation) or `common` (every candidate of one search sees
  the same random stream: a paired comparison with less noise).
- Validation cost is reported: `effopd/val_tokens` (sampled completion tokens) per search and
  `effopd/val_tokens_total`, plus an estimate of the forward FLOPs (2 · parameters · processed tokens).
- Only trainable parameters (`requires_grad`) are candidates; frozen ones have Δ = 0 anyway (LoRA's base).
- Single process only: under data/tensor parallelism every rank would have to run the same search.

Memory: the anchor holds one copy of the selected parameters on CPU (parameter dtype; 2 bytes per parameter in
bf16, e.g. ≈ 7 GB of a 4B model's ≈ 3.6B transformer-block weights), plus, during a search, a backup of W_t of the
same size (CPU) for the bit-exact restore. Both are in the checkpoint's `trainer.pt` (the anchor must survive a
resume). Candidate arithmetic is done one tensor at a time on the parameter's device, in fp32.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..config import ConfigError, from_dict
from ..cost import FORWARD, flop_params

# The official code's keyword list (`fsdp_workers.py`), matched as substrings of the parameter name.
DEFAULT_KEYWORDS = ("attn", "self_attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "mlp", "ffn",
                    "gate_proj", "up_proj", "down_proj")
VAL_SEED_OFFSET = 0xEFF0  # validation sampling stream: torch.Generator seeded with run.seed + this


@dataclass
class EffOPDConfig:
    """`controller_args.effopd` (specs/effopd.md §2.4)."""

    max_candidates: int = 5  # K: candidates W_t + 2k·Δ, k = 1..K (paper; code max_test_iterations = 5)
    accept: Literal["strict", "geq"] = "strict"  # strict: v_k > v_acc (code); geq: v_k >= v_acc (paper)
    val_size: int = 50  # validation prompts, drawn once from the training prompts with the run seed (paper)
    val_samples_per_prompt: int = 1  # sampled completions per validation prompt, at the training temperature (code)
    val_score: Literal["verifier", "teacher_agreement"] = "verifier"  # mean verifier reward, or argmax agreement with the teacher
    val_seed_mode: Literal["fresh", "common"] = "fresh"  # new sampling stream per candidate (code) or the same for all
    param_filter: str | list[str] = "default"  # default | linear_only | a list of name substrings | "re:REGEX"


# ----------------------------------------------------------------------------- numerics (pure functions)

def is_power_of_two(t: int) -> bool:
    """The code's trigger `t & (t - 1) == 0`, for t >= 1."""
    return t >= 1 and t & (t - 1) == 0


def crossed_power_of_two(prev: int, t: int) -> bool:
    """True when some power of two lies in (prev, t]: the optimizer step count reached 2^n during this
    training step (equals `is_power_of_two(t)` when t = prev + 1)."""
    if t < 1 or t <= prev:
        return False
    return 1 << (t.bit_length() - 1) > prev


def extrapolate(w_t: torch.Tensor, anchor: torch.Tensor, coef: float) -> torch.Tensor:
    """W_t + coef·(W_t − W_a), computed in fp32 and cast back to W_t's dtype (candidate k has coef = 2k)."""
    w = w_t.float()
    return (w + coef * (w - anchor.to(w.device).float())).to(w_t.dtype)


def accepts(v_new: float, v_acc: float, rule: str) -> bool:
    """Acceptance of a candidate's validation score against the best so far: `strict` (>) or `geq` (≥)."""
    if rule == "strict":
        return v_new > v_acc
    if rule == "geq":
        return v_new >= v_acc
    raise ValueError(f"accept rule {rule!r}: choose 'strict' or 'geq'")


def greedy_accept(v0: float, score: Callable[[int], float], max_candidates: int, rule: str) -> tuple[int, list[float]]:
    """Greedy search: score candidates k = 1..K in order (`score(k)`), accept while `accepts(v_k, v_acc)`, stop at
    the first failure. Returns (accepted k, 0 when none; the scores of every candidate evaluated)."""
    k_acc, v_acc, scores = 0, v0, []
    for k in range(1, max_candidates + 1):
        v = score(k)
        scores.append(v)
        if not accepts(v, v_acc, rule):
            break
        k_acc, v_acc = k, v
    return k_acc, scores


def matches_filter(name: str, param_filter: str | list[str]) -> bool:
    """Whether a parameter takes part in extrapolation: `default` (the code's keywords as substrings, which also
    catches `post_attention_layernorm`), `linear_only` (the same without norm layers), a list of substrings, or
    `re:REGEX` (searched in the name)."""
    if isinstance(param_filter, (list, tuple)):
        return any(k in name for k in param_filter)
    if param_filter == "default":
        return any(k in name for k in DEFAULT_KEYWORDS)
    if param_filter == "linear_only":
        modules = name.split(".")[:-1]  # drop `weight` / `bias`
        return any(k in name for k in DEFAULT_KEYWORDS) and not any("norm" in m for m in modules)
    if param_filter.startswith("re:"):
        return re.search(param_filter[3:], name) is not None
    raise ValueError(f"param_filter {param_filter!r}: use 'default', 'linear_only', a list of name substrings, "
                     "or 're:REGEX'")


def argmax_agreement(student_logits_BTV: torch.Tensor, teacher_logits_BTV: torch.Tensor,
                     mask_BT: torch.Tensor) -> tuple[float, float]:
    """(positions where argmax student == argmax teacher, positions) over `mask_BT` (ties: first index)."""
    same_BT = (student_logits_BTV.argmax(-1) == teacher_logits_BTV.argmax(-1)).float()
    return float((same_BT * mask_BT).sum()), float(mask_BT.sum())


# ----------------------------------------------------------------------------- one search on live parameters

@dataclass
class SearchResult:
    accepted_k: int  # 0: plain step (weights restored bit for bit)
    v0: float  # V(W_t)
    scores: list[float]  # V of each evaluated candidate, k = 1, 2, …
    delta_norm: float  # ‖Δ‖_F over the selected parameters

    @property
    def v_acc(self) -> float:
        return self.scores[self.accepted_k - 1] if self.accepted_k else self.v0


@torch.no_grad()
def extrapolation_search(params: list[tuple[str, torch.nn.Parameter]], anchor: dict[str, torch.Tensor],
                         validate: Callable[[], float], max_candidates: int, rule: str) -> SearchResult:
    """Run §2.2's greedy search on live parameters (in place) and leave them at the accepted weights. The
    anchor is not changed here (the caller moves it)."""
    backup = {n: p.detach().to("cpu", copy=True) for n, p in params}  # W_t, exact

    def load(coef: float) -> None:
        for n, p in params:
            if coef == 0:
                p.copy_(backup[n].to(p.device))
            else:
                p.copy_(extrapolate(backup[n].to(p.device), anchor[n], coef))

    delta_sq = sum(float((backup[n].float() - anchor[n].float()).pow(2).sum()) for n, _ in params)
    v0 = validate()

    def score(k: int) -> float:
        load(2.0 * k)
        return validate()

    k_acc, scores = greedy_accept(v0, score, max_candidates, rule)
    if k_acc < len(scores):  # the last evaluated candidate failed: load the accepted weights (W_t when k = 0)
        load(2.0 * k_acc)
    return SearchResult(k_acc, v0, scores, math.sqrt(delta_sq))


# ----------------------------------------------------------------------------- the controller

class EffOPDController:
    """Step controller: after the optimizer step at t = 2^n, extrapolate along W_t − W_anchor while a validation
    score improves (module docstring)."""

    def __init__(self, cfg, ctx):
        self.cfg = cfg
        self.c = c = from_dict(EffOPDConfig, cfg.controller_args.get("effopd", {}), "controller_args.effopd")
        for name in ("max_candidates", "val_size", "val_samples_per_prompt"):
            if getattr(c, name) < 1:
                raise ConfigError(f"controller_args.effopd.{name}: must be >= 1, got {getattr(c, name)}")
        try:
            self.names = [n for n, p in ctx.model.named_parameters() if p.requires_grad and matches_filter(n, c.param_filter)]
        except ValueError as e:
            raise ConfigError(f"controller_args.effopd.param_filter: {e}") from None
        if not self.names:
            some = [n for n, _ in ctx.model.named_parameters()][:4]
            raise ConfigError(f"controller_args.effopd.param_filter: {c.param_filter!r} matches no trainable parameter "
                              f"(names look like {some})")
        if c.val_score == "teacher_agreement" and getattr(ctx.stepper, "scorer", None) is None:
            raise ConfigError("controller_args.effopd.val_score: teacher_agreement needs a teacher "
                              f"(algo opd or g_opd with distill.teacher), but algo is {cfg.algo!r}")
        pool = getattr(ctx.stepper, "pool", None) or ctx.train_prompts
        if c.val_size > len(pool):
            raise ConfigError(f"controller_args.effopd.val_size: {c.val_size} validation prompts requested, but the "
                              f"training set has {len(pool)}")
        idx = np.random.default_rng([cfg.run.seed, VAL_SEED_OFFSET]).choice(len(pool), size=c.val_size, replace=False)
        self.val_prompts = [pool[int(i)] for i in idx]
        self._write_validation_set(ctx.run_dir)
        params = dict(ctx.model.named_parameters())
        self.anchor = {n: params[n].detach().to("cpu", copy=True) for n in self.names}  # W_0
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.run.seed + VAL_SEED_OFFSET)
        self.sampler = None  # the stepper's sampler, or an own one for steppers without (SFT)
        self.last_opt_step = 0
        self.val_tokens_total = 0
        self.val_flops_total = 0.0
        self.history: list[dict[str, Any]] = []  # one record per search

    # ------------------------------------------------------------------ hooks
    def before_step(self, step: int, ctx) -> dict[str, Any]:
        return {}

    def after_step(self, step: int, ctx, metrics: dict[str, Any]) -> dict[str, Any]:
        t = self._optimizer_steps(step, ctx)
        prev, self.last_opt_step = self.last_opt_step, t
        if not crossed_power_of_two(prev, t):
            return {}
        return self.search(t, ctx)

    def search(self, t: int, ctx) -> dict[str, Any]:
        t0 = time.perf_counter()
        params = dict(ctx.model.named_parameters())
        selected = [(n, params[n]) for n in self.names]
        cost = {"tokens": 0, "flops": 0.0}
        start_state = self.generator.get_state()

        def validate() -> float:
            if self.c.val_seed_mode == "common":
                self.generator.set_state(start_state)
            v, tokens, flops = self.validate(ctx)
            cost["tokens"] += tokens
            cost["flops"] += flops
            return v

        res = extrapolation_search(selected, self.anchor, validate, self.c.max_candidates, self.c.accept)
        self.anchor = {n: p.detach().to("cpu", copy=True) for n, p in selected}
        self.val_tokens_total += cost["tokens"]
        self.val_flops_total += cost["flops"]
        seconds = time.perf_counter() - t0
        self.history.append({"t": t, "accepted_k": res.accepted_k, "v0": res.v0, "scores": res.scores,
                             "delta_norm": res.delta_norm, "val_tokens": cost["tokens"], "time": seconds})
        print(f"[effopd] t={t}: ‖Δ‖={res.delta_norm:.4g}  V(W_t)={res.v0:.4f}  candidates "
              f"{[round(s, 4) for s in res.scores]}  → accepted k={res.accepted_k} "
              f"(weights = anchor + {2 * res.accepted_k + 1}·Δ)", flush=True)
        out = {"effopd/search": 1, "effopd/t": t, "effopd/delta_norm": res.delta_norm,
               "effopd/accepted_k": res.accepted_k, "effopd/v0": res.v0, "effopd/v_acc": res.v_acc,
               "effopd/candidates_evaluated": len(res.scores), "effopd/val_tokens": cost["tokens"],
               "effopd/val_tokens_total": self.val_tokens_total, "effopd/val_flops": cost["flops"],
               "effopd/val_flops_total": self.val_flops_total,
               "effopd/searches_accepted": sum(h["accepted_k"] >= 1 for h in self.history),
               "effopd/time": seconds}
        out.update({f"effopd/score_k{k}": v for k, v in enumerate(res.scores, start=1)})
        return out

    # ------------------------------------------------------------------ validation score V
    def validate(self, ctx) -> tuple[float, int, float]:
        """V(current weights): mean score over the validation completions; also (sampled completion tokens,
        estimated forward FLOPs) for the cost accounting."""
        from ..evaluate import RewardGuard

        sampler = self._sampler(ctx)
        max_new = self.cfg.sampling.max_new_tokens
        with torch.no_grad():  # horizon = max_new_tokens: never cut by a horizon controller (ADWIN)
            groups = sampler.generate(self.val_prompts, n=self.c.val_samples_per_prompt, generator=self.generator,
                                      template=self.cfg.data.prompt_template, horizon=max_new, max_new_tokens=max_new)
        rollouts = [r for g in groups for r in g]
        tokens = sum(r.length for r in rollouts)
        processed = sum(len(r.prompt_ids) + r.length for r in rollouts)
        flops = FORWARD * flop_params(ctx.model) * processed
        meter = getattr(ctx.stepper, "cost", None)  # the run's cost accounting counts validation sampling
        if meter is not None:
            meter.add("sampled", processed, flops)
        if self.c.val_score == "verifier":
            guard = RewardGuard("effopd")  # a raising or NaN verifier scores 0 here too
            scores = [guard.score(r.text or ctx.tokenizer.decode(r.completion_ids, skip_special_tokens=True), p)
                      for p, g in zip(self.val_prompts, groups) for r in g]
            return float(np.mean(scores)), tokens, flops
        v, teacher_flops = self._teacher_agreement(ctx, groups)
        if meter is not None:  # the student prefill again, and the teachers' prefills
            meter.add("sampled", processed, flops)
            meter.add("teacher", processed, teacher_flops)
        return v, tokens, flops * 2 + teacher_flops

    def _teacher_agreement(self, ctx, groups) -> tuple[float, float]:
        from ..rl import collate_rollouts

        scorer = ctx.stepper.scorer
        rollouts = [r for g in groups for r in g]
        routes = scorer.route([p for p, g in zip(self.val_prompts, groups) for _ in g])
        batch = collate_rollouts(rollouts, ctx.tokenizer.pad_token_id, ctx.device)
        V = len(ctx.tokenizer)
        same = total = teacher_flops = 0.0
        mbs = self.cfg.optim.micro_batch_size
        was_training = ctx.model.training
        ctx.model.eval()
        with torch.no_grad():
            for name, teacher in scorer.teachers.items():
                rows = [i for i, r in enumerate(routes) if r == name]
                n_t = flop_params(teacher.model)
                for i in range(0, len(rows), mbs):
                    ix = torch.tensor(rows[i:i + mbs], device=batch.input_ids.device)
                    ids, am = batch.input_ids[ix], batch.attention_mask[ix]
                    s_logits = ctx.model(input_ids=ids, attention_mask=am).logits[:, :-1, :V]
                    t_logits = teacher.model(input_ids=ids, attention_mask=am).logits[:, :-1, :V]
                    a, b = argmax_agreement(s_logits, t_logits, batch.loss_mask[ix])
                    same, total = same + a, total + b
                    teacher_flops += FORWARD * n_t * float(am.sum())
        ctx.model.train(was_training)
        return (same / total if total else 0.0), teacher_flops

    def _sampler(self, ctx):
        if self.sampler is None:
            self.sampler = getattr(ctx.stepper, "sampler", None)
            if self.sampler is None:
                from ..sampling import HFSampler

                self.sampler = HFSampler(ctx.model, ctx.tokenizer, self.cfg.sampling)
        return self.sampler

    # ------------------------------------------------------------------ bookkeeping
    @staticmethod
    def _optimizer_steps(step: int, ctx) -> int:
        """Global optimizer step count: the LR scheduler's step count when the stepper has one (it steps once per
        optimizer step), else the training step."""
        scheduler = getattr(ctx.stepper, "scheduler", None)
        return int(scheduler.last_epoch) if scheduler is not None else step

    def _write_validation_set(self, run_dir) -> None:
        from ..runs import atomic_write_text

        if run_dir is None:
            return
        path = Path(run_dir) / "effopd_val.jsonl"
        if not path.exists():
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, "".join(json.dumps({"id": p.id, "text": p.text, "answer": p.answer}) + "\n"
                                            for p in self.val_prompts))

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": {n: t.clone() for n, t in self.anchor.items()}, "generator": self.generator.get_state(),
                "val_ids": [p.id for p in self.val_prompts], "last_opt_step": self.last_opt_step,
                "val_tokens_total": self.val_tokens_total, "val_flops_total": self.val_flops_total,
                "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids = [p.id for p in self.val_prompts]
        if state["val_ids"] != ids:
            raise ValueError("effopd resume: the validation prompts drawn from this run's data differ from the "
                             f"checkpoint's (first saved id {state['val_ids'][0]!r}, now {ids[0]!r}); the training "
                             "data or controller_args.effopd.val_size changed")
        if sorted(state["anchor"]) != sorted(self.names):
            missing = sorted(set(self.names) ^ set(state["anchor"]))
            raise ValueError(f"effopd resume: the checkpoint's anchor covers other parameters than param_filter "
                             f"selects now (first difference {missing[0]!r})")
        self.anchor = {n: state["anchor"][n].clone() for n in self.names}
        self.generator.set_state(state["generator"])
        self.last_opt_step = state["last_opt_step"]
        self.val_tokens_total = state["val_tokens_total"]
        self.val_flops_total = state["val_flops_total"]
        self.history = [dict(h) for h in state["history"]]
