"""Pure tensor numerics of MR.Q, DR.Q and TD3 (no `self`, no config objects).

Every function here is a formula from the spec (`specs/drq.md` §2) and is tested against hand-derived values in
`tests/unit/test_control_losses.py`. The agents in `agent.py` and `td3.py` only orchestrate calls to these.

The spec asks for these to live in `mentor.losses`; that module belongs to the LLM side of the project, so they
live here and `mentor.losses` may re-export them (same names, same meaning).

Shapes: `B` batch, `H` horizon (unroll or multi-step length), `K` reward bins, `D` latent width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- symlog / two-hot (MR.Q reward head)

def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x)·log(1 + |x|)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x)·(exp(|x|) − 1), the inverse of `symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def symexp_bins(lower: float = -10.0, upper: float = 10.0, num_bins: int = 65) -> torch.Tensor:
    """MR.Q's reward bins: `num_bins` points evenly spaced in symlog space on [lower, upper], mapped by symexp."""
    if num_bins < 2 or not lower < upper:
        raise ValueError(f"symexp_bins: need num_bins >= 2 and lower < upper, got {num_bins}, [{lower}, {upper}]")
    return symexp(torch.linspace(lower, upper, num_bins, dtype=torch.float64)).float()


def two_hot(x_B: torch.Tensor, bins_K: torch.Tensor) -> torch.Tensor:
    """Two-hot encoding of scalars on (non-uniform) bins, as MR.Q's `TwoHot.transform`.

    For bins[k] <= x < bins[k+1] the mass is split linearly: p_k = (bins[k+1] − x)/(bins[k+1] − bins[k]),
    p_{k+1} = 1 − p_k, so Σ_k p_k·bins[k] = x exactly. Values outside [bins[0], bins[−1]] are clamped to the ends
    (MR.Q's version extrapolates with negative weights there; the clamp is our departure, it only matters for
    |r| > symexp(10) ≈ 22,025).
    """
    x = x_B.reshape(-1).to(bins_K.dtype).clamp(bins_K[0], bins_K[-1])
    K = bins_K.numel()
    lo = torch.searchsorted(bins_K, x, right=True).sub(1).clamp(0, K - 2)  # bins[lo] <= x < bins[lo+1]
    w_hi = (x - bins_K[lo]) / (bins_K[lo + 1] - bins_K[lo])
    out_BK = torch.zeros(x.shape[0], K, dtype=bins_K.dtype, device=x.device)
    out_BK.scatter_(1, lo[:, None], (1 - w_hi)[:, None])
    out_BK.scatter_add_(1, (lo + 1)[:, None], w_hi[:, None])
    return out_BK


def two_hot_decode(logits_BK: torch.Tensor, bins_K: torch.Tensor) -> torch.Tensor:
    """Expected value Σ_k softmax(logits)_k·bins[k], shape (B, 1)."""
    return (F.softmax(logits_BK, dim=-1) * bins_K).sum(-1, keepdim=True)


def two_hot_cross_entropy(logits_BK: torch.Tensor, target_B: torch.Tensor, bins_K: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy −Σ_k two_hot(target)_k·log softmax(logits)_k, shape (B, 1)."""
    return -(two_hot(target_B, bins_K) * F.log_softmax(logits_BK, dim=-1)).sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- encoder losses

def masked_mse(pred_BD: torch.Tensor, target_BD: torch.Tensor, mask_B1: torch.Tensor | float) -> torch.Tensor:
    """mean over all elements of (pred − target)²·mask (MR.Q's `masked_mse`: the normaliser is B·D, masked or not)."""
    return (F.mse_loss(pred_BD, target_BD, reduction="none") * mask_B1).mean()


def infonce_per_row(u_BD: torch.Tensor, v_BD: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """DR.Q's InfoNCE, one direction sa → s': row b is −log softmax_c(û_b·v̂_c/τ)_b with û, v̂ L2-normalised.

    Positives sit on the diagonal; every other column of the batch is a negative (masked rows included, since the
    mask is applied to the per-row losses only). Returns shape (B,). I(u; v) ≥ log B − mean loss.
    """
    if tau <= 0:
        raise ValueError(f"infonce: tau must be > 0, got {tau}")
    sim_BB = F.normalize(u_BD, dim=1) @ F.normalize(v_BD, dim=1).T / tau
    return F.cross_entropy(sim_BB, torch.arange(u_BD.shape[0], device=u_BD.device), reduction="none")


def infonce_loss(u_BD: torch.Tensor, v_BD: torch.Tensor, mask_B1: torch.Tensor | float = 1.0, tau: float = 0.1) -> torch.Tensor:
    """(1/B) Σ_b m_b·infonce_b — the masked mean used per unroll step in DR.Q's encoder loss."""
    rows_B1 = infonce_per_row(u_BD, v_BD, tau)[:, None]
    return (rows_B1 * mask_B1).mean()


# ----------------------------------------------------------------------------- value targets

def nstep_returns(rewards_BH: torch.Tensor, not_done_BH: torch.Tensor, gamma: float, form: str = "mrq") -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step return R and bootstrap factor D, each (B, 1), so that y = R + D·Q̄(s_{t+H}).

    form="mrq" (MR.Q's code): R = Σ_i γ^i r_i (no masking of rewards after a terminal: the buffer's segments past a
    terminal hold the next episode's rewards; MR.Q multiplies the bootstrap only), D = γ^H·Π_i nd_i.
    form="standard" (DR.Q's code): R = Σ_i (Π_{j<i} γ·nd_j)·r_i, D = Π_i γ·nd_i — rewards after a terminal are cut.
    """
    if rewards_BH.shape != not_done_BH.shape or rewards_BH.dim() != 2:
        raise ValueError(f"nstep_returns: rewards {tuple(rewards_BH.shape)} and not_done {tuple(not_done_BH.shape)} must both be (B, H)")
    H = rewards_BH.shape[1]
    if form == "mrq":
        gammas_H = gamma ** torch.arange(H, dtype=rewards_BH.dtype, device=rewards_BH.device)
        R = (rewards_BH * gammas_H).sum(1, keepdim=True)
        D = gamma**H * not_done_BH.prod(1, keepdim=True)
        return R, D
    if form == "standard":
        R = torch.zeros_like(rewards_BH[:, :1])
        scale = torch.ones_like(R)
        for i in range(H):
            R = R + scale * rewards_BH[:, i : i + 1]
            scale = scale * gamma * not_done_BH[:, i : i + 1]
        return R, scale
    raise ValueError(f"nstep_returns: form must be 'mrq' or 'standard', got {form!r}")


def mrq_value_target(R_B1: torch.Tensor, D_B1: torch.Tensor, next_q_min_B1: torch.Tensor, reward_scale: float,
                     target_reward_scale: float, scaled: bool = True) -> torch.Tensor:
    """MR.Q: y = (R + D·Q̄·s_target)/s_cur (Q in units of mean |r|); DR.Q (`scaled=False`): y = R + D·Q̄."""
    if scaled:
        return (R_B1 + D_B1 * next_q_min_B1 * target_reward_scale) / reward_scale
    return R_B1 + D_B1 * next_q_min_B1


def smoothed_target_action(next_action_BA: torch.Tensor, noise_std: float, noise_clip: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """TD3 target policy smoothing: clip(π̄(s') + clip(N(0, σ²), ±c), ±1)."""
    noise = torch.randn(next_action_BA.shape, generator=generator, dtype=next_action_BA.dtype) * noise_std
    return (next_action_BA + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td3_target(reward_B1: torch.Tensor, not_done_B1: torch.Tensor, next_q1_B1: torch.Tensor, next_q2_B1: torch.Tensor,
               gamma: float) -> torch.Tensor:
    """y = r + γ·(1 − d)·min(Q̄_1, Q̄_2)."""
    return reward_B1 + gamma * not_done_B1 * torch.minimum(next_q1_B1, next_q2_B1)


# ----------------------------------------------------------------------------- replay priorities

def lap_priority(abs_td_B: torch.Tensor, alpha: float = 0.4, min_priority: float = 1.0) -> torch.Tensor:
    """LAP priority max(|δ|, 1)^α (Fujimoto et al. 2020), as used by MR.Q."""
    return abs_td_B.clamp(min=min_priority).pow(alpha)


def fade_weight(age: torch.Tensor, decay: float = 0.9999, floor: float = 0.1) -> torch.Tensor:
    """DR.Q's faded-replay weight max(decay^age, floor); age counts adds since the slot was written.

    Computed in float64 so it matches multiplying by `decay` once per add to ~1e-12."""
    return torch.clamp(decay ** age.to(torch.float64), min=floor)


def fade_half_life(decay: float = 0.9999) -> float:
    """Number of adds after which the fade weight is 1/2: ln 2 / −ln decay (≈ 6,931 for 0.9999)."""
    return math.log(2.0) / -math.log(decay)
