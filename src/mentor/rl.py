"""One RLVR step: Selector → Sampler → Scorers → Objective → Learner (DESIGN.md §2, specs/grpo_family.md §2.5).

```
prompts  = selector.select(B)                      # `dynamic`: oversample, drop degenerate groups, refill
groups   = sampler.generate(prompts, n=G)          # records the sampler's log-probs and finish reasons
R        = verifier(groups) (+ overlong shaping)   # a verifier that raises or returns NaN scores 0 (counted)
A        = group_advantages(R, kind)               # or LPO's listwise weights
l_old    = learner log-probs (no grad)             # skipped when the batch gets exactly one optimizer step:
                                                   #   then l_old = l_theta.detach() in the same forward
l_ref    = reference log-probs                     # only when rl.kl_coef > 0
for epoch, minibatch: one optimizer step, micro-batches summed with one explicit normaliser
```

The stepper is plain orchestration: every numeric is a call into `losses.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import losses
from .config import ConfigError, TrainConfig
from .cost import FORWARD, FORWARD_BACKWARD, CostMeter, flop_params
from .objectives import Resolved, resolve
from .types import Prompt, Rollout, TrainBatch


# Prompt transforms between Selector and Sampler (DESIGN.md §2): `TRANSFORMS[name](pool, seed=, args=)` builds one with
# `apply(prompts, step) -> prompts`, `update(groups, step)` (outcomes, e.g. for a depth curriculum),
# `metrics() -> dict`, `state_dict()` / `load_state_dict()`. Values are "module:Class" so heavy imports stay lazy.
TRANSFORMS: dict[str, str] = {"composition": "mentor.tasks.composition:CompositionTransform"}


def build_transform(name: str, pool, seed: int, args: dict):
    import importlib

    if name not in TRANSFORMS:
        raise ConfigError(f"rl.transform: {name!r} is not allowed; choose one of {sorted(TRANSFORMS)}")
    module, cls = TRANSFORMS[name].split(":")
    return getattr(importlib.import_module(module), cls)(pool, seed=seed, args=args)


@dataclass
class Group:
    """One prompt's G rollouts with their rewards."""

    prompt: Prompt
    rollouts: list[Rollout]
    rewards: list[float]
    correct: list[bool]
    texts: list[str]


def collate_rollouts(rollouts: list[Rollout], pad_id: int, device) -> TrainBatch:
    """Right-padded prompt+completion rows; per-token tensors are aligned with targets (position t predicts
    token t+1); `loss_mask` is 1 on completion tokens; the sampler's log-probs sit at the same positions."""
    T = max(len(r.prompt_ids) + len(r.completion_ids) for r in rollouts)
    B = len(rollouts)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T - 1))
    samp = torch.zeros((B, T - 1))
    for b, r in enumerate(rollouts):
        p, c = len(r.prompt_ids), len(r.completion_ids)
        input_ids[b, : p + c] = torch.tensor(r.prompt_ids + r.completion_ids)
        attention_mask[b, : p + c] = 1
        loss_mask[b, p - 1 : p - 1 + c] = 1.0
        samp[b, p - 1 : p - 1 + c] = torch.tensor(r.logprobs, dtype=torch.float32)
    return TrainBatch(input_ids.to(device), attention_mask.to(device), loss_mask.to(device),
                      num_loss_tokens=int(loss_mask.sum()), extras={"sampler_logprobs": samp.to(device)})


def token_logprobs(model, mb: TrainBatch, temperature: float, with_entropy: bool = False):
    logits_BTV = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits[:, :-1]
    return losses.gather_logprobs(logits_BTV, mb.input_ids[:, 1:], temperature=temperature, with_entropy=with_entropy)


def _slice(mb: TrainBatch, idx: list[int]) -> TrainBatch:
    """Rows `idx` of a batch, trimmed to their longest row (less padding per micro-batch)."""
    ix = torch.tensor(idx, device=mb.input_ids.device)
    T = int(mb.attention_mask[ix].sum(1).max())
    extras = {k: v[ix][:, : T - 1] if v.dim() == 2 else v[ix] for k, v in mb.extras.items()}
    lm = mb.loss_mask[ix][:, : T - 1]
    return TrainBatch(mb.input_ids[ix][:, :T], mb.attention_mask[ix][:, :T], lm,
                      old_logprobs=None if mb.old_logprobs is None else mb.old_logprobs[ix][:, : T - 1],
                      advantages=None if mb.advantages is None else mb.advantages[ix],
                      num_loss_tokens=int(lm.sum()), extras=extras)


def length_buckets(lengths: list[int], unit: int, max_rows: int, overhead_tokens: int) -> list[list[int]]:
    """Micro-batches (lists of row indices) for rows of `lengths` tokens, planned to minimise the padded work

        cost = Σ_mb ( rows(mb) · longest(mb) + overhead_tokens )

    where `overhead_tokens` prices one extra forward/backward call in tokens. Rows come in consecutive units of
    `unit` rows that stay together (a whole group when the loss couples a group's rows; 1 otherwise); a
    micro-batch holds at most max(max_rows, unit) rows. Units are sorted by their longest row (longest first,
    ties in index order) and cut into consecutive runs by dynamic programming, which finds the cheapest cut of
    that order: with cost rows · longest, splitting a batch sorted by length loses nothing to interleaving."""
    if unit < 1 or len(lengths) % unit:
        raise ValueError(f"length_buckets: {len(lengths)} rows do not split into units of {unit}")
    if overhead_tokens < 0:
        raise ValueError(f"length_buckets: overhead_tokens (optim.micro_batch_overhead_tokens) must be >= 0, "
                         f"got {overhead_tokens}")
    longest_U = [max(lengths[u * unit : (u + 1) * unit]) for u in range(len(lengths) // unit)]
    order = sorted(range(len(longest_U)), key=lambda u: (-longest_U[u], u))
    cap = max(1, max_rows // unit)  # units per micro-batch
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[i]: cheapest plan of the first i sorted units
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - cap), i):  # last micro-batch = sorted units j..i-1, longest is unit j
            c = best[j] + (i - j) * unit * longest_U[order[j]] + overhead_tokens
            if c < best[i]:
                best[i], cut[i] = c, j
    plan, i = [], n
    while i > 0:
        plan.append([u * unit + k for u in order[cut[i] : i] for k in range(unit)])
        i = cut[i]
    return plan[::-1]


class RLStepper:
    def __init__(self, cfg: TrainConfig, model, tokenizer, optimizer, scheduler, pool: list[Prompt], device):
        from .sampling import HFSampler
        from .selection import SELECTORS

        self.cfg, self.model, self.tokenizer, self.device = cfg, model, tokenizer, device
        self.optimizer, self.scheduler = optimizer, scheduler
        self.obj: Resolved = resolve(cfg.algo, cfg.rl)
        rl = cfg.rl
        if self.obj.objective.listwise and rl.lpo_tau == "mean" and rl.success_threshold != 1.0:
            raise ConfigError("rl.lpo_tau=mean needs rewards in [0, 1] (binary verifiers)")
        self.pool = self._fit_to_context(pool)
        self.selector = SELECTORS[self.obj.selector](self.pool, seed=cfg.run.seed, max_rounds=rl.dynamic_max_rounds,
                                                     oversample=rl.dynamic_oversample, on_exhaust=rl.dynamic_on_exhaust,
                                                     args=self._selector_args(rl))
        self.sampler = HFSampler(model, tokenizer, cfg.sampling)
        self.transform = build_transform(rl.transform, self.pool, cfg.run.seed, rl.transform_args) if rl.transform else None
        self.pool_ids = {p.id for p in self.pool}
        self.step_no = 0
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.run.seed + 1)
        self.reference = self._load_reference() if rl.kl_coef > 0 else None
        from .evaluate import RewardGuard

        self.rewards = RewardGuard("rl")  # a verifier that raises or returns NaN scores 0, counted
        self.cost = CostMeter()
        self.n_params = flop_params(model)
        self.horizon: int | None = cfg.sampling.horizon  # a horizon controller (ADWIN) sets this before each step
        self.scorer = None
        if self.obj.objective.distill:
            from .objectives import check_distill
            from .scoring import TeacherScorer

            check_distill(cfg.algo, cfg.distill)
            self.scorer = TeacherScorer(cfg.distill, tokenizer, cfg.model.path, device=device, dtype=cfg.model.dtype,
                                        run_dir=cfg.run.out_dir, student_model=model, seed=cfg.run.seed)
            self.scorer.check_routes(self.pool)

    # ------------------------------------------------------------------ set-up helpers
    def _selector_args(self, rl) -> dict:
        """The selector's own settings; dynamic sampling counts successes with the run's success threshold."""
        args = dict(rl.selector_args)
        if self.obj.selector == "dynamic":
            args.setdefault("success_threshold", rl.success_threshold)
        return args

    def _fit_to_context(self, pool: list[Prompt]) -> list[Prompt]:
        """Drop prompts that cannot fit prompt + max_new_tokens in the model's context (logged, not fatal)."""
        from .tasks.data import render_prompt

        limit = getattr(self.model.config, "max_position_embeddings", None)
        if not limit:
            return pool
        room = limit - self.cfg.sampling.max_new_tokens
        kept = [p for p in pool if len(self.tokenizer(render_prompt(self.tokenizer, p, self.cfg.data.prompt_template),
                                                      add_special_tokens=False)["input_ids"]) <= room]
        if len(kept) < len(pool):
            print(f"[rl] dropped {len(pool) - len(kept)} of {len(pool)} prompts longer than the context allows "
                  f"({limit} positions − {self.cfg.sampling.max_new_tokens} new tokens)")
        if not kept:
            raise ValueError(f"rl: no prompt fits the model's context of {limit} positions with "
                             f"sampling.max_new_tokens={self.cfg.sampling.max_new_tokens}")
        return kept

    def _load_reference(self):
        from .models import load_model

        path = self.cfg.rl.reference or self.cfg.model.path
        # The initial policy is reloaded from its source (a `tiny:` model rebuilds identically from the run seed),
        # so a resumed run gets the same reference as an uninterrupted one.
        ref = load_model(path, dtype=self.cfg.model.dtype, device=str(self.device), seed=self.cfg.run.seed, tokenizer=self.tokenizer)
        ref.eval().requires_grad_(False)
        return ref

    # ------------------------------------------------------------------ scorers
    def sample_and_score(self, prompts: list[Prompt]) -> list[Group]:
        if self.transform is not None:
            prompts = self.transform.apply(prompts, self.step_no)
        self.model.eval()
        with torch.no_grad():
            out = self.sampler.generate(prompts, n=self.obj.group_size, generator=self.generator,
                                        template=self.cfg.data.prompt_template, horizon=self.horizon)
        texts = [[r.text or self.tokenizer.decode(r.completion_ids, skip_special_tokens=True) for r in rs] for rs in out]
        code = [(i, j) for i, p in enumerate(prompts) if p.verifier == "code" for j in range(len(out[i]))]
        batched: dict[tuple[int, int], float] = {}
        if code:  # model-written programs run in the sandbox pool, in parallel (mentor.verifiers.code)
            from .verifiers.code import score_batch

            scores = score_batch([texts[i][j] for i, j in code], [prompts[i] for i, _ in code])
            batched = {ij: self.rewards.check(r, prompts[ij[0]]) for ij, r in zip(code, scores)}
        groups = []
        for i, (p, rollouts) in enumerate(zip(prompts, out)):
            rewards = [batched[(i, j)] if (i, j) in batched else self.rewards.score(t, p) for j, t in enumerate(texts[i])]
            groups.append(Group(p, rollouts, rewards, [r >= self.cfg.rl.success_threshold for r in rewards], texts[i]))
        return groups

    # ------------------------------------------------------------------ the step
    def step(self, step: int) -> dict[str, Any]:
        cfg, rl, obj = self.cfg, self.cfg.rl, self.obj
        B, G = cfg.optim.batch_size, obj.group_size
        self.step_no = step
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        if hasattr(self.selector, "fill"):  # selectors that sample themselves (DAPO dynamic sampling)
            groups, dm, seen = self.selector.fill(B, self.sample_and_score, lambda g: g.rewards)
            metrics.update(dm)
            times["sample"] = time.perf_counter() - t0
        else:
            prompts = self.selector.select(B)
            times["select"] = time.perf_counter() - t0
            groups = seen = self.sample_and_score(prompts)
            times["sample"] = time.perf_counter() - t0 - times["select"]
        from .selection import Observation

        # every sampled group, kept or dropped, so that selectors learn from all rollouts (selection.md R1); a
        # transformed prompt (e.g. a composition) is not a pool prompt, so only the transform sees its outcome
        self.selector.update([Observation(g.prompt.id, sum(g.correct), len(g.correct), step) for g in seen
                              if g.prompt.id in self.pool_ids])
        if hasattr(self.selector, "metrics"):
            metrics.update(self.selector.metrics())
        if self.transform is not None:
            self.transform.update(seen, step)
            metrics.update(self.transform.metrics())
        sampled = sum(len(r.prompt_ids) + r.length for g in seen for r in g.rollouts)  # dropped groups included
        self.cost.add("sampled", sampled, FORWARD * self.n_params * sampled)
        if not groups:
            return {**metrics, "skipped_empty_batch": 1.0, **{f"time/{k}": v for k, v in times.items()}}

        t1 = time.perf_counter()
        rollouts = [r for g in groups for r in g.rollouts]
        rewards_BG = torch.tensor([g.rewards for g in groups], dtype=torch.float32)
        lengths_BG = torch.tensor([[r.length for r in g.rollouts] for g in groups], dtype=torch.float32)
        shaped_BG = rewards_BG.clone()
        if obj.overlong_shaping:
            L_max = cfg.sampling.max_new_tokens
            shaped_BG = shaped_BG + losses.overlong_penalty(lengths_BG, L_max, rl.overlong_cache or max(1, L_max // 5))
        batch = collate_rollouts(rollouts, self.tokenizer.pad_token_id, self.device)
        if rl.overlong_filter:  # a horizon cut (ADWIN prefixes) is not an overlong answer: only "length" is filtered
            truncated = torch.tensor([r.finish_reason == "length" for r in rollouts], device=self.device)
            batch.loss_mask[truncated] = 0.0
            batch.num_loss_tokens = int(batch.loss_mask.sum())
        if obj.objective.advantage is not None:
            adv_BG = losses.group_advantages(shaped_BG, obj.objective.advantage, std_ddof=rl.std_ddof, eps=rl.adv_eps,
                                             baseline="group" if obj.objective.advantage == "reinforce_pp" and rl.reinforce_baseline == "group" else None)
            batch.advantages = adv_BG.reshape(-1).to(self.device)
            metrics["adv/abs_mean"] = float(adv_BG.abs().mean())
        batch.extras["rewards"] = shaped_BG.reshape(-1).to(self.device)
        one_step = rl.ppo_epochs == 1 and rl.minibatches == 1
        if rl.recompute_old_logprobs and not one_step:
            batch.old_logprobs = self._logprobs_no_grad(self.model, batch)
        elif not rl.recompute_old_logprobs:
            batch.old_logprobs = batch.extras["sampler_logprobs"]
        if self.reference is not None:
            batch.extras["kl_ref_logprobs"] = self._logprobs_no_grad(self.reference, batch)
        if self.scorer is not None:
            routes = self.scorer.route([g.prompt for g in groups for _ in g.rollouts])
            batch.extras.update(self.scorer.score(batch, routes, cfg.optim.micro_batch_size))
            metrics.update(self._distill_metrics(batch, routes))
        times["score"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        learn = self._learn(batch, len(groups), G)
        times["learn"] = time.perf_counter() - t2

        rewards = rewards_BG.reshape(-1)
        correct = torch.tensor([c for g in groups for c in g.correct], dtype=torch.float32)
        lengths = lengths_BG.reshape(-1)
        degenerate = float(np.mean([max(g.rewards) == min(g.rewards) for g in groups]))
        metrics.update({
            "reward/mean": float(rewards.mean()), "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "accuracy": float(correct.mean()), "zero_variance_groups": degenerate,
            "response_length/mean": float(lengths.mean()),
            "response_length/correct": float(lengths[correct > 0].mean()) if correct.any() else float("nan"),
            "response_length/wrong": float(lengths[correct == 0].mean()) if (correct == 0).any() else float("nan"),
            "truncated": float(np.mean([r.finish_reason == "length" for r in rollouts])),
            "horizon_cut": float(np.mean([r.finish_reason == "horizon" for r in rollouts])),
            "reward/errors": self.rewards.errors, "tokens": int(batch.attention_mask.sum()),
            "sampled_tokens": int(lengths.sum()),
        })
        metrics.update(learn)
        self._account(batch)
        metrics.update({f"time/{k}": v for k, v in times.items()})
        metrics["_samples"] = [{"prompt": g.prompt.text, "completion": g.texts[0], "reward": g.rewards[0], "answer": g.prompt.answer}
                               for g in groups[: cfg.run.samples_per_step]]
        return metrics

    def _logprobs_no_grad(self, model, batch: TrainBatch) -> torch.Tensor:
        """Per-token log-probs of every row under `model`, in micro-batches planned by length."""
        out = torch.zeros_like(batch.loss_mask)
        o = self.cfg.optim
        lengths = batch.attention_mask.sum(1).tolist()
        model.eval()
        with torch.no_grad():
            for idx in length_buckets(lengths, 1, o.micro_batch_size, o.micro_batch_overhead_tokens):
                lp = token_logprobs(model, _slice(batch, idx), self.cfg.sampling.temperature)
                out[idx, : lp.shape[1]] = lp.to(out.dtype)
        return out

    def _learn(self, batch: TrainBatch, n_groups: int, G: int) -> dict[str, Any]:
        """ppo_epochs × minibatches optimizer steps; minibatches hold whole groups. Micro-batches are planned by
        length (`length_buckets`), so little compute goes to padding: LPO's listwise loss couples a group's rows,
        so its micro-batches hold whole groups; every other loss is a sum over rows divided by one explicit
        normaliser, so its rows are bucketed one by one and rows without loss tokens are not run at all. Any such
        plan gives the minibatch's gradient up to float rounding."""
        from .train import backward_step

        rl, o = self.cfg.rl, self.cfg.optim
        self.model.train()
        group_ids = list(range(n_groups))
        listwise = bool(self.obj.objective.listwise)
        agg: dict[str, list[float]] = {}
        for epoch in range(rl.ppo_epochs):
            order = group_ids if rl.minibatches == 1 else list(np.random.default_rng([self.cfg.run.seed, epoch]).permutation(n_groups))
            for chunk in np.array_split(np.array(order), rl.minibatches):
                rows = [g * G + j for g in chunk.tolist() for j in range(G)]
                minibatch = _slice(batch, rows)
                normaliser = self._normaliser(minibatch, G)
                if normaliser == 0:
                    continue
                keep = list(range(len(rows))) if listwise else minibatch.loss_mask.any(1).nonzero().flatten().tolist()
                lengths = minibatch.attention_mask.sum(1)[keep].tolist()
                plan = length_buckets(lengths, G if listwise else 1, o.micro_batch_size, o.micro_batch_overhead_tokens)
                micro = [_slice(minibatch, [keep[i] for i in idx]) for idx in plan]
                m = backward_step(self.model, self.optimizer, self.scheduler, micro, self._loss, normaliser, o.grad_clip)
                for k, v in m.items():
                    agg.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in agg.items()}

    def _normaliser(self, mb: TrainBatch, G: int) -> float:
        if self.obj.objective.listwise:
            return float(losses.lpo_normaliser(mb.extras["rewards"].reshape(-1, G), self.cfg.rl.lpo_identical_groups))
        return float(losses.loss_normaliser(mb.loss_mask, self.obj.aggregation, L_norm=self.cfg.sampling.max_new_tokens))

    def _loss(self, model, mb: TrainBatch, normaliser: float):
        rl, T = self.cfg.rl, self.cfg.sampling.temperature
        logits_BTV = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits[:, :-1]
        lp, ent = losses.gather_logprobs(logits_BTV, mb.input_ids[:, 1:], temperature=T, with_entropy=True)
        samp = mb.extras["sampler_logprobs"]
        if self.obj.objective.listwise:
            G = self.obj.group_size
            s_BK = losses.masked_sum((lp - samp), mb.loss_mask, dim=1).reshape(-1, G)
            loss, metrics = losses.lpo_loss(mb.extras["rewards"].reshape(-1, G), s_BK, kind=self.obj.objective.listwise,
                                            tau=rl.lpo_tau, std_ddof=rl.std_ddof,
                                            identical_groups=rl.lpo_identical_groups, normaliser=normaliser)
            metrics["entropy"] = losses.masked_mean(ent.detach(), mb.loss_mask)
            return loss, {**{k: float(v) for k, v in metrics.items()}, "_weight": mb.num_loss_tokens}
        old = mb.old_logprobs if mb.old_logprobs is not None else lp.detach()
        if self.obj.objective.distill:
            if self.cfg.distill.estimator != "sampled":
                return self._distill_direct_loss(logits_BTV, mb, lp, ent, normaliser)
            adv = self._distill_advantages(mb, old)
        else:
            adv = mb.advantages[:, None].expand_as(lp)
        loss, metrics = losses.policy_loss(
            lp, old, adv, mb.loss_mask, clip_eps_low=self.obj.clip_eps_low, clip_eps_high=self.obj.clip_eps_high,
            dual_clip_c=self.obj.dual_clip_c, sampler_logprobs=samp if rl.recompute_old_logprobs else None,
            tis_cap=rl.tis_cap, ref_logprobs=mb.extras.get("kl_ref_logprobs"), kl_coef=rl.kl_coef,
            kl_estimator=rl.kl_estimator, entropy=ent, entropy_coef=rl.entropy_coef, aggregation=self.obj.aggregation,
            normaliser=normaliser, L_norm=self.cfg.sampling.max_new_tokens)
        pg_loss = float(metrics.pop("pg_loss"))  # this micro-batch's share of the batch's pg_loss
        return loss, {**{k: float(v) for k, v in metrics.items()}, "_weight": mb.num_loss_tokens,
                      "_summed": {"pg_loss": pg_loss}}

    # ------------------------------------------------------------------ distillation (specs/opd.md)
    def _distill_advantages(self, mb: TrainBatch, old: torch.Tensor) -> torch.Tensor:
        """A_t = λ·ℓT + (1−λ)·ℓref − ℓold per row's own teacher λ (G-OPD; λ = 1 is OPD), times kl_penalty_coef."""
        d = self.cfg.distill
        lam_N = mb.extras["reward_scale"]
        adv = torch.zeros_like(old)
        for lam in torch.unique(lam_N).tolist():
            rows = (lam_N == lam).nonzero().flatten()
            adv[rows] = losses.gopd_token_advantages(
                old[rows], mb.extras["teacher_logprobs"][rows], mb.extras["ref_logprobs"][rows] if lam != 1.0 else None,
                lam, mask=mb.loss_mask[rows], discount=d.discount or None)
        return d.kl_penalty_coef * adv

    def _distill_direct_loss(self, logits_BTV, mb: TrainBatch, lp, ent, normaliser):
        """`topk` / `full` estimators: a supervised per-token loss against the routed teacher's logits."""
        d = self.cfg.distill
        routes = mb.extras["route"].tolist()
        per_token = torch.zeros_like(lp)
        for idx, (name, t) in enumerate(self.scorer.teachers.items()):
            rows = [i for i, r in enumerate(routes) if r == idx]
            if not rows:
                continue
            with torch.no_grad():
                t_logits = t.model(input_ids=mb.input_ids[rows], attention_mask=mb.attention_mask[rows]).logits[:, :-1].float()
            if d.estimator == "topk":
                t_lp, t_ids = losses.topk_logprobs(t_logits, d.topk)
                per_token[rows] = losses.topk_forward_kl(logits_BTV[rows], t_lp, t_ids, tail=d.topk_tail)
            else:
                per_token[rows] = losses.generalized_jsd(logits_BTV[rows], t_logits, beta=d.jsd_beta)
        loss = losses.masked_sum(per_token, mb.loss_mask) / normaliser
        return loss, {"distill_loss": float(losses.masked_mean(per_token.detach(), mb.loss_mask)),
                      "entropy": float(losses.masked_mean(ent.detach(), mb.loss_mask)), "_weight": mb.num_loss_tokens}

    def _distill_metrics(self, batch: TrainBatch, routes: list[str]) -> dict[str, float]:
        """Reverse-KL estimate (mean of ℓsamp − ℓT on sampled tokens), teacher NLL, per teacher."""
        names = list(self.scorer.teachers)
        batch.extras["route"] = torch.tensor([names.index(r) for r in routes], device=batch.loss_mask.device)
        m, t, s = batch.loss_mask, batch.extras["teacher_logprobs"], batch.extras["sampler_logprobs"]
        out = {"opd/reverse_kl": float(losses.masked_mean(s - t, m)), "opd/teacher_nll": float(losses.masked_mean(-t, m)),
               "opd/adv_positive": float(losses.masked_mean((t > s).float(), m))}
        if len(names) > 1:
            for i, name in enumerate(names):
                rows = batch.extras["route"] == i
                if rows.any():
                    out[f"opd/{name}/reverse_kl"] = float(losses.masked_mean((s - t)[rows], m[rows]))
                    out[f"opd/{name}/samples"] = int(rows.sum())
        return out

    # ------------------------------------------------------------------ cost accounting
    def _account(self, batch: TrainBatch) -> None:
        """Add this step's learner passes and teacher / reference prefills to the run's cost meter (`mentor.cost`;
        student sampling is added in `step`, dropped groups included)."""
        rl = self.cfg.rl
        seq_tokens = int(batch.attention_mask.sum())
        N = self.n_params
        self.cost.add("trained", seq_tokens * rl.ppo_epochs, FORWARD_BACKWARD * N * seq_tokens * rl.ppo_epochs)
        if rl.recompute_old_logprobs and not (rl.ppo_epochs == 1 and rl.minibatches == 1):  # the ℓold pass
            self.cost.add("trained", seq_tokens, FORWARD * N * seq_tokens)
        if self.reference is not None:  # KL-to-reference prefill
            self.cost.add("teacher", seq_tokens, FORWARD * N * seq_tokens)
        if self.scorer is not None:  # each row is prefilled by its own teacher (and reference when λ != 1)
            tokens_N = batch.attention_mask.sum(1)
            for i, t in enumerate(self.scorer.teachers.values()):
                rows_tokens = int(tokens_N[batch.extras["route"] == i].sum())
                self.cost.add("teacher", rows_tokens, FORWARD * flop_params(t.model) * rows_tokens)
                if t.reference is not None:
                    ref = self.scorer.references[t.reference]
                    self.cost.add("teacher", rows_tokens, FORWARD * flop_params(ref) * rows_tokens)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"selector": self.selector.state_dict(), "generator": self.generator.get_state(),
                "reward_errors": self.rewards.errors, "cost": self.cost.state_dict(), "horizon": self.horizon,
                "transform": self.transform.state_dict() if self.transform is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.selector.load_state_dict(state["selector"])
        self.generator.set_state(state["generator"])
        self.rewards.errors = state["reward_errors"]
        self.cost.load_state_dict(state["cost"])
        self.horizon = state["horizon"]
        if self.transform is not None:
            self.transform.load_state_dict(state["transform"])


def make_rl_stepper(cfg, model, tokenizer, optimizer, scheduler, pool, device):
    return RLStepper(cfg, model, tokenizer, optimizer, scheduler, pool, device)
