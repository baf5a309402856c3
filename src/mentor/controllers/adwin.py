"""ADWIN: an adaptive supervision horizon for on-policy distillation (specs/adwin.md), and its baselines.

Paper: Liang, Tang, Bai, Liu, Yang, Wu, "ADWIN: Adaptive Windows for Horizon-Aware On-Policy Distillation",
https://arxiv.org/abs/2605.28396. Only the abstract is public and no code is released, so **everything below is
mentor's reconstruction from the abstract** (specs/adwin.md §2), not the paper's algorithm. What the abstract
fixes: OPD trains on short teacher-anchored prefixes; delayed full-rollout probes audit prefix–full alignment of
the update; staleness is controlled; the horizon adapts online.

The reconstruction (every choice ours)::

    state: horizon H ∈ [h_min, h_max] (starts at h0), EMA ā (unset), shrink counter n_ok, probe queue Q
    step k:
      before:  if k % probe_every == 0: sample ceil(probe_frac·B) probe prompts to h_max tokens with θ_k
               (the weights that sample step k's prefixes) and push them on Q
               set the sampling horizon of step k to H: rollouts stop at EOS ("stop") or at H ("horizon");
               teachers prefill only the prefix; only prefix tokens carry loss (OPD needs no final answer)
      update:  the ordinary OPD / G-OPD step on the prefixes (token-mean loss)
      after:   for each probe on Q, oldest first, with k − probe.step ≥ audit_delay:
                   s = k − probe.step (staleness); pop it; if s > max_staleness: count it discarded, skip
                   a = alignment(probe, θ_{k+1}, H);  w = staleness_decay^s
                   ā = a if unset else (1 − ema_rate·w)·ā + ema_rate·w·a
                   if ā < tau:                 H ← min(h_max, ceil(beta·H)); reset ā, n_ok     (grow at once)
                   elif ā ≥ tau + hysteresis:  n_ok += 1; if n_ok ≥ patience: H ← max(h_min, floor(H/beta)); reset
                   else:                       n_ok = 0                                         (hold)

Alignment of a probe with the current student: A_t = stopgrad(ℓT_t − ℓθ_t) (the run's own OPD / G-OPD advantage,
routing and `kl_penalty_coef` included), segment gradients g_seg = −∇θ Σ_{t ∈ seg} m_t·A_t·ℓθ_t (token sums: the
cosine is scale-free), and a = cos(g_{t<H}, g_all). The gradients are compared through a sketch: `countsketch:M`
(coordinate i of every trainable parameter is added with a seeded sign σ(i) into bucket h(i) of R^M; generated
per parameter from a seeded generator, nothing stored; cosine error ≈ 1/√M), `params:REGEX` (the exact gradient
of the matching parameters), or `exact` (all trainable parameters; for tests and tiny models). With
`audit_candidates: true` the completion is cut at H/β, H and β·H and a(H/β), a(H), a(β·H) are all logged from one
audit (one backward per segment through one retained graph).

Proxies logged at every audit (not used by the rule): advantage mass μ(H) = Σ_{t<H}|A_t| / Σ_t|A_t|, the fraction
of probe rollouts that stop before H, and the teacher NLL −ℓT on prefix and late positions.

Departures and choices of ours, beyond the reconstruction above:
- Probe prompts are drawn uniformly from the training pool with the controller's own RNG (the spec takes the
  first ceil(ρ·B) prompts of the step's batch; those are not known before the step samples, and a same-distribution
  draw is equivalent in expectation). Probe sampling uses the controller's own `torch.Generator`, so the training
  sampling stream is the same whatever the probes do.
- Single process: probe rollouts are complete when launched, so staleness is the audit delay unless
  `audit_delay > max_staleness`; the `ready` step of a probe exists for asynchronous probes (tested on the rule).
- Probe rollouts are never trained on. Audits do not touch `.grad` (`torch.autograd.grad`), the optimizer or the
  training RNG streams.
- Costs: probe sampling counts as `sampled`, probe teacher prefill as `teacher`, audit forward + backwards as
  `audit` (6·N per token plus 4·N per extra backward) in the run's cost meter (`mentor.cost`).

Baselines (the same controller, `mode`): `full` (H ≡ h_max: full-rollout OPD), `fixed` (H ≡ h0: fixed-prefix OPD,
as TOPD), `progressive` (H_k = min(h_max, h0·(h_max/h0)^(k/K)) with K = `progressive_steps`, half the run by
default; `schedule: linear` for h0 + (h_max − h0)·k/K; as POPD). They run no probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..config import ConfigError, from_dict
from ..cost import EXTRA_BACKWARD, FORWARD, FORWARD_BACKWARD, flop_params

PROBE_SEED_OFFSET = 0xAD14  # the probe streams: seeded with run.seed + this


@dataclass
class AdwinConfig:
    """`controller_args.adwin` (specs/adwin.md §2 "Defaults"; tiny-task recipes scale the horizons)."""

    mode: Literal["adwin", "full", "fixed", "progressive"] = "adwin"
    h0: int = 2048  # initial horizon (adwin), the fixed horizon (fixed), the first horizon (progressive)
    h_min: int = 512
    h_max: int | None = None  # default: sampling.max_new_tokens
    beta: float = 2.0  # grow / shrink factor
    tau: float = 0.9  # grow when the alignment EMA falls below tau
    hysteresis: float = 0.05  # shrink needs EMA >= tau + hysteresis ...
    patience: int = 2  # ... on this many consecutive audits
    probe_every: int = 4  # launch a probe every P steps
    probe_frac: float = 0.125  # probe prompts per launch: ceil(probe_frac · optim.batch_size)
    audit_delay: int = 1  # audit a probe d steps after its launch
    max_staleness: int = 3  # discard probes older than this at audit time
    staleness_decay: float = 0.8  # EMA weight gamma^s of a probe s steps old
    ema_rate: float = 0.5  # alpha
    sketch: str = "countsketch:8192"  # countsketch:M | params:REGEX | exact
    audit_candidates: bool = False  # also log a(H/beta) and a(beta·H)
    progressive_steps: int | None = None  # K of the progressive baseline (default: half of run.steps)
    schedule: Literal["geometric", "linear"] = "geometric"  # progressive baseline


# ----------------------------------------------------------------------------- the rule (pure functions)

@dataclass
class HorizonState:
    H: int
    ema: float | None = None
    n_ok: int = 0


def staleness_weight(s: int, decay: float) -> float:
    return decay ** s


def apply_audit(state: HorizonState, a: float, s: int, c: AdwinConfig, h_max: int) -> tuple[HorizonState, str, float]:
    """One audit's effect on the horizon (module docstring): the new state, "grow" / "shrink" / "hold", and the
    EMA the decision was taken on (the state's EMA is reset after a change)."""
    w = staleness_weight(s, c.staleness_decay)
    ema = a if state.ema is None else (1.0 - c.ema_rate * w) * state.ema + c.ema_rate * w * a
    if ema < c.tau:
        return HorizonState(min(h_max, math.ceil(c.beta * state.H))), "grow", ema
    if ema >= c.tau + c.hysteresis:
        if state.n_ok + 1 >= c.patience:
            return HorizonState(max(c.h_min, math.floor(state.H / c.beta))), "shrink", ema
        return HorizonState(state.H, ema, state.n_ok + 1), "hold", ema
    return HorizonState(state.H, ema, 0), "hold", ema


def progressive_horizon(k: int, h0: int, h_max: int, k_prog: int, schedule: str = "geometric") -> int:
    """H_k of the progressive-prefix baseline at step k (1-based): h0 at k = 0, h_max from k = k_prog on."""
    frac = min(1.0, k / max(1, k_prog))
    if schedule == "linear":
        return min(h_max, math.ceil(h0 + (h_max - h0) * frac))
    return min(h_max, math.ceil(h0 * (h_max / h0) ** frac - 1e-9))


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """cos(x, y); 1.0 when both are zero (no signal anywhere: nothing to disagree on), 0.0 when one is."""
    x, y = x.double(), y.double()
    nx, ny = float(x.norm()), float(y.norm())
    if nx == 0.0 and ny == 0.0:
        return 1.0
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(torch.dot(x, y)) / (nx * ny)


def mass_fraction(abs_adv_BT: torch.Tensor, pos_BT: torch.Tensor, mask_BT: torch.Tensor, H: int) -> float:
    """μ(H) = Σ_{t<H}|A_t| / Σ_t|A_t| over the masked completion positions (pos = 0-based completion index)."""
    a = abs_adv_BT * mask_BT
    total = float(a.sum())
    return float((a * (pos_BT < H)).sum()) / total if total > 0 else 1.0


def segment_bounds(H: int, beta: float, h_max: int, candidates: bool) -> list[int]:
    """Completion positions where segments are cut: [H], or [H/β, H, β·H] inside (0, h_max)."""
    if not candidates:
        return [H]
    return sorted({b for b in (math.floor(H / beta), H, math.ceil(beta * H)) if 0 < b < h_max} | {H})


# ----------------------------------------------------------------------------- gradient sketches

class GradientSketch:
    """A linear map from the trainable parameters' gradient to a vector whose cosines approximate the gradients'.

    `countsketch:M`: coordinate i of parameter j goes to bucket h_j(i) ∈ [0, M) with sign σ_j(i) ∈ {±1}, both drawn
    from a generator seeded with (seed, j), regenerated per call (O(#params) time, nothing stored). `params:REGEX`:
    the concatenated gradients of the parameters whose names match. `exact`: all of them."""

    def __init__(self, spec: str, named_params: list[tuple[str, torch.nn.Parameter]], seed: int):
        import re

        self.spec, self.seed = spec, seed
        kind, _, arg = spec.partition(":")
        if kind == "countsketch":
            try:
                self.m = int(arg)
            except ValueError:
                raise ConfigError(f"controller_args.adwin.sketch: {spec!r}: countsketch needs a bucket count, "
                                  "e.g. countsketch:8192") from None
            if self.m < 1:
                raise ConfigError(f"controller_args.adwin.sketch: {spec!r}: the bucket count must be >= 1")
            self.named = named_params
        elif kind == "params":
            try:
                rx = re.compile(arg)
            except re.error as e:
                raise ConfigError(f"controller_args.adwin.sketch: {spec!r}: bad regex ({e})") from None
            self.named = [(n, p) for n, p in named_params if rx.search(n)]
            if not self.named:
                raise ConfigError(f"controller_args.adwin.sketch: {spec!r} matches no trainable parameter "
                                  f"(names look like {[n for n, _ in named_params[:3]]})")
        elif spec == "exact":
            self.named = named_params
        else:
            raise ConfigError(f"controller_args.adwin.sketch: {spec!r}: use countsketch:M, params:REGEX or exact")
        self.kind = kind

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.named]

    def __call__(self, grads: list[torch.Tensor | None]) -> torch.Tensor:
        """Sketch of one gradient (a list aligned with `self.params`; None = zero)."""
        if self.kind != "countsketch":
            return torch.cat([(torch.zeros(p.numel(), device=p.device) if g is None else g.detach().float().flatten())
                              for g, p in zip(grads, self.params)]).cpu()
        out = torch.zeros(self.m, dtype=torch.float64)
        for j, (g, p) in enumerate(zip(grads, self.params)):
            if g is None:
                continue
            out += self.countsketch(g.detach().flatten().cpu().double(), j)
        return out

    def countsketch(self, v: torch.Tensor, j: int) -> torch.Tensor:
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + j)
        buckets = torch.randint(self.m, (v.numel(),), generator=gen)
        signs = torch.randint(2, (v.numel(),), generator=gen).double() * 2.0 - 1.0
        return torch.zeros(self.m, dtype=torch.float64).index_add_(0, buckets, signs * v)


# ----------------------------------------------------------------------------- the controller

@dataclass
class Probe:
    step: int  # the step whose weights θ_step sampled it
    ready: int  # the step at which its rollouts were complete (= step in a single process)
    prompts: list = field(default_factory=list)
    rollouts: list = field(default_factory=list)  # one list of Rollouts per prompt


class AdwinController:
    """Step controller setting the rollout horizon (module docstring)."""

    def __init__(self, cfg, ctx):
        from ..objectives import OBJECTIVES

        self.cfg = cfg
        self.c = c = from_dict(AdwinConfig, cfg.controller_args.get("adwin", {}), "controller_args.adwin")
        obj = OBJECTIVES.get(cfg.algo)
        if obj is None or not obj.distill:
            raise ConfigError(f"controllers: adwin sets an on-policy distillation horizon and needs algo opd or g_opd "
                              f"(a prefix has no verifiable answer), got algo {cfg.algo!r}")
        if cfg.distill.estimator != "sampled":
            raise ConfigError("controller_args.adwin: needs distill.estimator=sampled (the audited update is the "
                              f"sampled-token OPD gradient), got {cfg.distill.estimator!r}")
        self.h_max = c.h_max or cfg.sampling.max_new_tokens
        if self.h_max > cfg.sampling.max_new_tokens:
            raise ConfigError(f"controller_args.adwin.h_max: {self.h_max} exceeds sampling.max_new_tokens "
                              f"({cfg.sampling.max_new_tokens})")
        lo = c.h_min if c.mode == "adwin" else 1
        if not lo <= c.h0 <= self.h_max:
            raise ConfigError(f"controller_args.adwin.h0: {c.h0} must lie in [{'h_min' if c.mode == 'adwin' else '1'}="
                              f"{lo}, h_max={self.h_max}]")
        checks = [("beta", c.beta > 1), ("tau", 0 < c.tau <= 1), ("hysteresis", c.hysteresis >= 0),
                  ("patience", c.patience >= 1), ("probe_every", c.probe_every >= 1),
                  ("probe_frac", 0 < c.probe_frac <= 1), ("audit_delay", c.audit_delay >= 0),
                  ("max_staleness", c.max_staleness >= 0), ("staleness_decay", 0 < c.staleness_decay <= 1),
                  ("ema_rate", 0 < c.ema_rate <= 1), ("h_min", c.h_min >= 1)]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"controller_args.adwin.{name}: invalid value {getattr(c, name)!r}")
        self.k_prog = c.progressive_steps or max(1, cfg.run.steps // 2)
        self.state = HorizonState(c.h0 if c.mode != "full" else self.h_max)
        self.queue: list[Probe] = []
        seed = cfg.run.seed + PROBE_SEED_OFFSET
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.sketch = None
        if c.mode == "adwin":
            named = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
            self.sketch = GradientSketch(c.sketch, named, seed)
        self.counts = {"probes": 0, "audits": 0, "discarded": 0, "grow": 0, "shrink": 0}
        self.trajectory: list[int] = []  # H used at each step

    # ------------------------------------------------------------------ hooks
    def horizon(self, step: int) -> int:
        c = self.c
        if c.mode == "full":
            return self.h_max
        if c.mode == "fixed":
            return c.h0
        if c.mode == "progressive":
            return progressive_horizon(step, c.h0, self.h_max, self.k_prog, c.schedule)
        return self.state.H

    def before_step(self, step: int, ctx) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.c.mode == "adwin" and step % self.c.probe_every == 0:
            out.update(self.launch_probe(step, ctx))
        H = self.horizon(step)
        ctx.stepper.horizon = H
        self.trajectory.append(H)
        return {**out, "adwin/horizon": H}

    def after_step(self, step: int, ctx, metrics: dict[str, Any]) -> dict[str, Any]:
        if self.c.mode != "adwin":
            return {}
        out: dict[str, Any] = {}
        for probe in [p for p in self.queue if step - p.step >= self.c.audit_delay and p.ready <= step]:
            self.queue.remove(probe)
            s = step - probe.step
            if s > self.c.max_staleness:
                self.counts["discarded"] += 1
                continue
            out.update(self.audit(probe, s, ctx))
        stale = [p for p in self.queue if step - p.step > self.c.max_staleness]  # never completed in time
        for p in stale:
            self.queue.remove(p)
            self.counts["discarded"] += 1
        out.update({f"adwin/{k}_total": v for k, v in self.counts.items()})
        out["adwin/next_horizon"] = self.state.H
        return out

    # ------------------------------------------------------------------ probes and audits
    def launch_probe(self, step: int, ctx) -> dict[str, Any]:
        stepper = ctx.stepper
        n = math.ceil(self.c.probe_frac * self.cfg.optim.batch_size)
        idx = self.rng.choice(len(stepper.pool), size=min(n, len(stepper.pool)), replace=False)
        prompts = [stepper.pool[int(i)] for i in idx]
        model = ctx.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            rollouts = stepper.sampler.generate(prompts, n=stepper.obj.group_size, generator=self.generator,
                                                template=self.cfg.data.prompt_template, horizon=self.h_max,
                                                max_new_tokens=self.h_max)
        model.train(was_training)
        tokens = sum(len(r.prompt_ids) + r.length for rs in rollouts for r in rs)
        stepper.cost.add("sampled", tokens, FORWARD * stepper.n_params * tokens)
        self.queue.append(Probe(step, step, prompts, rollouts))
        self.counts["probes"] += 1
        return {"adwin/probe_tokens": tokens}

    def audit(self, probe: Probe, s: int, ctx) -> dict[str, Any]:
        """Alignment of the prefix update with the full-rollout update on one probe, then the horizon rule."""
        H = self.state.H
        res = self.alignment(probe, H, ctx)
        self.state, event, ema = apply_audit(self.state, res["a"], s, self.c, self.h_max)
        self.counts["audits"] += 1
        if event != "hold":
            self.counts[event] += 1
        out = {"adwin/alignment": res["a"], "adwin/ema": ema,
               "adwin/event": {"grow": 1, "shrink": -1, "hold": 0}[event], "adwin/staleness": s,
               "adwin/audited_horizon": H, "adwin/mass": res["mass"], "adwin/finished_before_h": res["finished"],
               "adwin/teacher_nll_prefix": res["nll_prefix"], "adwin/teacher_nll_late": res["nll_late"],
               "adwin/audit_tokens": res["tokens"]}
        out.update({f"adwin/alignment_at_{b}": a for b, a in res["candidates"].items()})
        print(f"[adwin] audit of the step-{probe.step} probe (s={s}): a(H={H})={res['a']:.3f} μ={res['mass']:.3f} "
              f"→ {event}, next H={self.state.H}", flush=True)
        return out

    def alignment(self, probe: Probe, H: int, ctx) -> dict[str, Any]:
        from .. import losses
        from ..rl import _slice, collate_rollouts, token_logprobs

        stepper, model = ctx.stepper, ctx.model
        rollouts = [r for rs in probe.rollouts for r in rs]
        prompts = [p for p, rs in zip(probe.prompts, probe.rollouts) for _ in rs]
        batch = collate_rollouts(rollouts, ctx.tokenizer.pad_token_id, ctx.device)
        mbs = self.cfg.optim.micro_batch_size
        routes = stepper.scorer.route(prompts)
        batch.extras.update(stepper.scorer.score(batch, routes, mbs))
        batch.extras["pos"] = completion_positions(rollouts, batch.loss_mask.shape[1]).to(ctx.device)
        bounds = segment_bounds(H, self.c.beta, self.h_max, self.c.audit_candidates)
        sketches: list[torch.Tensor | None] = [None] * (len(bounds) + 1)
        abs_adv = torch.zeros_like(batch.loss_mask)
        params = self.sketch.params
        was_training = model.training
        model.train()
        audit_flops = 0.0
        n = stepper.n_params
        for i in range(0, len(rollouts), mbs):
            mb = _slice(batch, list(range(i, min(i + mbs, len(rollouts)))))
            lp = token_logprobs(model, mb, self.cfg.sampling.temperature)
            adv = stepper._distill_advantages(mb, lp.detach())
            abs_adv[i:i + lp.shape[0], : lp.shape[1]] = adv.abs() * mb.loss_mask
            seg_id = torch.bucketize(mb.extras["pos"], torch.tensor(bounds, device=lp.device), right=True)
            weighted = -(adv * mb.loss_mask) * lp
            segs = [j for j in range(len(bounds) + 1) if bool(((seg_id == j) & (mb.loss_mask > 0)).any())]
            for n, j in enumerate(segs):
                loss = (weighted * (seg_id == j)).sum()
                grads = torch.autograd.grad(loss, params, retain_graph=n < len(segs) - 1, allow_unused=True)
                sk = self.sketch(list(grads))
                sketches[j] = sk if sketches[j] is None else sketches[j] + sk
            mb_tokens = int(mb.attention_mask.sum())  # one forward + backward, then one more backward per segment
            audit_flops += FORWARD_BACKWARD * n * mb_tokens + EXTRA_BACKWARD * n * mb_tokens * max(0, len(segs) - 1)
        model.train(was_training)
        present = [sk for sk in sketches if sk is not None]
        cum = _cumsum(sketches, torch.zeros_like(present[0]) if present else torch.zeros(1))
        full = cum[-1]
        candidates = {b: cosine(cum[j], full) for j, b in enumerate(bounds)}
        pos, mask = batch.extras["pos"], batch.loss_mask
        teacher_nll = -batch.extras["teacher_logprobs"]
        pre, late = mask * (pos < H), mask * (pos >= H)
        tokens = int(batch.attention_mask.sum())
        stepper.cost.add("audit", tokens, audit_flops)
        for j, (name, t) in enumerate(stepper.scorer.teachers.items()):
            rows_tokens = int(sum(int(batch.attention_mask[r].sum()) for r, rt in enumerate(routes) if rt == name))
            stepper.cost.add("teacher", rows_tokens, FORWARD * flop_params(t.model) * rows_tokens)
            if t.reference is not None:
                stepper.cost.add("teacher", rows_tokens,
                                 FORWARD * flop_params(stepper.scorer.references[t.reference]) * rows_tokens)
        return {"a": candidates[H], "candidates": candidates if self.c.audit_candidates else {},
                "mass": mass_fraction(abs_adv, pos, mask, H),
                "finished": float(np.mean([r.finish_reason == "stop" and r.length <= H for r in rollouts])),
                "nll_prefix": float(losses.masked_mean(teacher_nll, pre)) if pre.sum() > 0 else float("nan"),
                "nll_late": float(losses.masked_mean(teacher_nll, late)) if late.sum() > 0 else float("nan"),
                "tokens": tokens}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"state": (self.state.H, self.state.ema, self.state.n_ok), "queue": list(self.queue),
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
                "counts": dict(self.counts), "trajectory": list(self.trajectory), "mode": self.c.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["mode"] != self.c.mode:
            raise ValueError(f"adwin resume: the checkpoint ran mode {state['mode']!r}, the config now says "
                             f"{self.c.mode!r}")
        self.state = HorizonState(*state["state"])
        self.queue = list(state["queue"])
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])
        self.counts = dict(state["counts"])
        self.trajectory = list(state["trajectory"])


def _cumsum(sketches: list[torch.Tensor | None], zero: torch.Tensor) -> list[torch.Tensor]:
    out, acc = [], zero
    for s in sketches:
        acc = acc + (s if s is not None else zero)
        out.append(acc)
    return out


def completion_positions(rollouts, width: int) -> torch.Tensor:
    """(B, width) 0-based completion index of the token each loss column predicts; −1 on prompt and padding
    (aligned with `collate_rollouts`' loss mask)."""
    pos = torch.full((len(rollouts), width), -1, dtype=torch.long)
    for b, r in enumerate(rollouts):
        p, c = len(r.prompt_ids), len(r.completion_ids)
        pos[b, p - 1: p - 1 + c] = torch.arange(c)
    return pos
