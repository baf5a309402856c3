"""Named objectives: which advantage estimator, aggregation and defaults each uses (specs/grpo_family.md,
specs/lpo.md). All numerics are in `losses.py`; an objective only names how to call it.

| objective      | advantage                      | aggregation (default)      | other defaults                               |
|----------------|--------------------------------|----------------------------|----------------------------------------------|
| `grpo`         | (R − mean_G) / (std_G + ε)     | seq_mean_token_mean        | clip 0.2 / 0.2                               |
| `dr_grpo`      | R − mean_G                     | seq_mean_token_sum_norm    | L_norm = max_new_tokens                      |
| `dapo`         | as grpo                        | token_mean                 | clip 0.2 / 0.28, overlong shaping, `dynamic` |
| `rloo`         | leave-one-out baseline         | seq_mean_token_sum         |                                              |
| `reinforce_pp` | batch-normalised (R − mean_B)  | token_mean                 | `rl.reinforce_baseline=group` for the variant |
| `lpo_fwd`      | listwise KL(w* ‖ P_θ)          | mean over informative groups | τ = std                                    |
| `lpo_rev`      | listwise KL(P_θ ‖ w*)          | mean over informative groups | τ = std                                    |
| `opd`          | ℓT − ℓold per token (opd.md)   | token_mean                 | n = 1 per prompt, dual-clip 3, λ = 1 only    |
| `g_opd`        | λ·ℓT + (1−λ)·ℓref − ℓold       | token_mean                 | as opd; λ = distill.reward_scale (ExOPD 1.25) |
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError, RLConfig


@dataclass(frozen=True)
class Objective:
    name: str
    advantage: str | None  # kind for losses.group_advantages; None for listwise objectives
    aggregation: str
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2
    overlong_shaping: bool = False
    selector: str = "uniform"
    listwise: str | None = None  # "fwd" / "rev" for LPO
    distill: bool = False  # token advantages from teacher log-probs (OPD / G-OPD)
    group_size: int = 8  # completions per prompt
    dual_clip_c: float | None = None


OBJECTIVES: dict[str, Objective] = {
    "grpo": Objective("grpo", "grpo", "seq_mean_token_mean"),
    "dr_grpo": Objective("dr_grpo", "dr_grpo", "seq_mean_token_sum_norm"),
    "dapo": Objective("dapo", "grpo", "token_mean", clip_eps_high=0.28, overlong_shaping=True, selector="dynamic"),
    "rloo": Objective("rloo", "rloo", "seq_mean_token_sum"),
    "reinforce_pp": Objective("reinforce_pp", "reinforce_pp", "token_mean"),
    "lpo_fwd": Objective("lpo_fwd", None, "groups", listwise="fwd"),
    "lpo_rev": Objective("lpo_rev", None, "groups", listwise="rev"),
    "opd": Objective("opd", None, "token_mean", distill=True, group_size=1, dual_clip_c=3.0),
    "g_opd": Objective("g_opd", None, "token_mean", distill=True, group_size=1, dual_clip_c=3.0),
}


@dataclass(frozen=True)
class Resolved:
    """An objective with every `None` in `RLConfig` replaced by the objective's default."""

    objective: Objective
    rl: RLConfig
    aggregation: str
    clip_eps_low: float
    clip_eps_high: float
    overlong_shaping: bool
    selector: str
    group_size: int
    dual_clip_c: float | None


def resolve(algo: str, rl: RLConfig) -> Resolved:
    if algo not in OBJECTIVES:
        raise ConfigError(f"algo: {algo!r} is not an RL objective; choose one of {sorted(OBJECTIVES)} (or 'sft')")
    obj = OBJECTIVES[algo]
    group_size = obj.group_size if rl.group_size is None else rl.group_size
    if group_size < (1 if obj.distill else 2):
        raise ConfigError(f"rl.group_size: {algo} needs at least {1 if obj.distill else 2} completions per prompt, got {group_size}")
    if isinstance(rl.lpo_tau, str) and rl.lpo_tau not in ("std", "one", "mean"):
        raise ConfigError(f"rl.lpo_tau: {rl.lpo_tau!r} is not allowed; choose 'std', 'one', 'mean' or a positive number")
    if not isinstance(rl.lpo_tau, str) and rl.lpo_tau <= 0:
        raise ConfigError(f"rl.lpo_tau: must be positive, got {rl.lpo_tau}")
    from .selection import SELECTORS

    if rl.selector is not None and rl.selector not in SELECTORS:
        raise ConfigError(f"rl.selector: {rl.selector!r} is not allowed; choose one of {sorted(SELECTORS)}")
    if rl.dual_clip_c is not None and rl.dual_clip_c <= 1:
        raise ConfigError(f"rl.dual_clip_c: must be > 1 (or null), got {rl.dual_clip_c}")
    if obj.listwise and rl.aggregation is not None:
        raise ConfigError(f"rl.aggregation: {algo} averages over informative groups; leave aggregation unset")
    return Resolved(
        objective=obj, rl=rl,
        aggregation=rl.aggregation or obj.aggregation,
        clip_eps_low=obj.clip_eps_low if rl.clip_eps_low is None else rl.clip_eps_low,
        clip_eps_high=obj.clip_eps_high if rl.clip_eps_high is None else rl.clip_eps_high,
        overlong_shaping=obj.overlong_shaping if rl.overlong_shaping is None else rl.overlong_shaping,
        selector=rl.selector or obj.selector,
        group_size=group_size,
        dual_clip_c=obj.dual_clip_c if rl.dual_clip_c is None else rl.dual_clip_c,
    )


def check_distill(algo: str, distill) -> None:
    """`opd` is λ = 1 by definition; λ ≠ 1 is `g_opd` (never a silent change of method)."""
    lams = [distill.reward_scale] + [t.reward_scale for t in distill.teachers.values() if t.reward_scale is not None]
    if algo == "opd" and any(lam != 1.0 for lam in lams):
        raise ConfigError("distill.reward_scale: algo=opd is λ = 1; use algo=g_opd for λ != 1 (ExOPD: 1.25)")
