"""Every numeric of mentor's RL and distillation objectives, once, as pure functions on tensors.

Specs: `specs/grpo_family.md` (advantages, the clipped policy loss, TIS, KL, aggregation), `specs/lpo.md`
(listwise weights and loss), `specs/opd.md` (OPD / G-OPD token advantages, top-k and full-vocabulary
estimators). The formula of each function, with its source tag ([paper], [code], [secondary],
[our design]) is in its docstring; the table of all of them is `docs/losses.md`.

Sources and the exact variants implemented:
- GRPO (DeepSeekMath, arXiv 2402.03300 §4.1): group-normalised advantage with Bessel-corrected std and
  ε = 1e-6 as in TRL and verl; Dr. GRPO (arXiv 2503.20783): mean-centred only; RLOO (arXiv 2402.14740):
  leave-one-out baseline; REINFORCE++ (arXiv 2501.03262): global-batch normalisation, optionally after a
  group baseline (OpenRLHF / verl `*_baseline`).
- PPO clipped surrogate with DAPO's asymmetric clip (arXiv 2503.14476), optional dual-clip (arXiv
  1912.09729), token-level truncated importance sampling against the sampler's log-probs (verl rollout
  correction, cap 5 as in the G-OPD recipe), KL-to-reference as a loss term with J. Schulman's k1/k2/k3.
- LPO (arXiv 2605.06139) from the two secondary write-ups: target softmax(R/τ), forward or reverse KL on
  the simplex of the group's sequence log-ratios.
- OPD: tinker-cookbook's sampled-token reverse KL as a per-token advantage (optional discounted future
  sum); G-OPD / ExOPD (arXiv 2602.12125) per-token advantage as in `RUCBM/G-OPD`; forward KL over the
  teacher's top-k (verl) with TRL's tail bucket; TRL GKD's generalized JSD over the full vocabulary.

Departures and filled gaps (all [our design]):
- The log-ratio log ρ and the TIS log-ratio are clamped to ±20 before `exp` (verl clamps log ρ the same
  way); k1/k2/k3 themselves are not clamped (verl clamps k3 to ±10).
- A group whose rewards are all equal gets advantage exactly 0 for grpo/dapo/dr_grpo/rloo, also with ε = 0
  and for rewards whose float mean is inexact (detected by equality, not by std = 0).
- Sequence-level aggregation counts a sequence in N_seq only if it has at least one loss token (a fully
  masked sequence, e.g. an overlong-filtered one, contributes nothing and is not counted).
- LPO: groups with identical rewards get zero weight and leave the normaliser (`identical_groups="mask"`),
  or are pulled to the uniform target (`"project"`); no log-ratio clipping, no length normalisation.
- The discounted OPD advantage sums over positions (masked positions contribute 0 reward but still count
  in the discount exponent), as tinker's `_discounted_future_sum_vectorized`.

Conventions: tensors carry their axes as suffixes (B batch or prompts, G group, T tokens, V vocabulary,
K top-k). Per-token tensors are aligned: position t holds the log-prob of token t given tokens < t (the
caller shifts logits and ids). Masks are float or bool; a float mask acts as per-token weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch
from torch.autograd.function import once_differentiable

Aggregation = Literal["seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm", "token_mean"]
AGGREGATIONS = ("seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm", "token_mean")
ADVANTAGE_KINDS = ("grpo", "dapo", "dr_grpo", "rloo", "reinforce_pp")
KL_ESTIMATORS = ("k1", "k2", "k3")
LPO_KINDS = ("fwd", "rev")
LPO_TAU_RULES = ("std", "one", "mean")
OPD_ESTIMATORS = ("sampled", "topk", "full")

LOG_RATIO_CLAMP = 20.0  # |log ρ| bound before exp [code] verl
CHUNK_BYTES = 32 * 2**20  # default size of one float32 vocabulary block (bytes)


# ============================================================================ checks


def _check_shape(name: str, x: torch.Tensor, shape: Sequence[int], where: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{where}: `{name}` has shape {tuple(x.shape)}, expected {tuple(shape)}")


def _check_choice(name: str, value: object, allowed: Sequence[str], where: str) -> None:
    if value not in allowed:
        raise ValueError(f"{where}: {name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _as_normaliser(normaliser: float | torch.Tensor, like: torch.Tensor, where: str) -> float | torch.Tensor:
    """An explicit normaliser in the dtype of `like` (a float64 count must not promote a float32 loss)."""
    if isinstance(normaliser, torch.Tensor):
        return normaliser.to(like.dtype)
    if not normaliser > 0:
        raise ValueError(f"{where}: normaliser must be > 0, got {normaliser}")
    return float(normaliser)


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype numerics run in: float64 stays float64, everything else is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ============================================================================ vocabulary chunks


def _rows_per_chunk(vocab: int, chunk_size: int | None, where: str, n_vocab_inputs: int = 1) -> int:
    if chunk_size is None:
        return max(1, CHUNK_BYTES // (4 * vocab * n_vocab_inputs))
    if chunk_size < 1:
        raise ValueError(f"{where}: chunk_size must be a positive number of (batch, time) rows, got {chunk_size}")
    return int(chunk_size)


def _blocks(B: int, T: int, chunk_rows: int) -> list[tuple[slice, slice]]:
    """(batch, time) blocks of at most `chunk_rows` positions: whole sequences when one fits, else pieces."""
    if T <= chunk_rows:
        step = max(1, chunk_rows // max(T, 1))
        return [(slice(b, b + step), slice(0, T)) for b in range(0, B, step)]
    return [(slice(b, b + 1), slice(t, t + chunk_rows)) for b in range(B) for t in range(0, T, chunk_rows)]


class _ChunkedRows(torch.autograd.Function):
    """Apply `fn(*blocks, *args) -> tuple of (b, t) tensors` block by block over (B, T, ...) inputs.

    Forward runs without a graph and writes into preallocated (B, T) outputs. Backward recomputes each block
    with a graph, differentiates it, and writes the block's gradient into one preallocated gradient per
    input: autograd holds only the inputs, and float32 vocabulary-sized temporaries exist for one block at a
    time (activation checkpointing; torch.utils.checkpoint is avoided because it imports torch._dynamo on
    first use, ~5 s on a 2-core CPU, and checkpointing split blocks would end in a concatenation of all
    block gradients)."""

    @staticmethod
    def forward(ctx, fn, args, chunk_rows, *inputs):
        ctx.fn, ctx.args, ctx.chunk_rows = fn, args, chunk_rows
        ctx.save_for_backward(*inputs)
        B, T = inputs[0].shape[:2]
        outs: list[torch.Tensor] = []
        for bs, ts in _blocks(B, T, chunk_rows):
            res = fn(*(x[bs, ts] for x in inputs), *args)
            if not outs:
                outs = [torch.empty((B, T, *r.shape[2:]), dtype=r.dtype, device=r.device) for r in res]
            for out, r in zip(outs, res):
                out[bs, ts] = r
        return tuple(outs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad[3:]
        grads = [torch.empty_like(x) if need else None for x, need in zip(inputs, needs)]
        B, T = inputs[0].shape[:2]
        for bs, ts in _blocks(B, T, ctx.chunk_rows):
            blocks = [x[bs, ts].detach().requires_grad_(need) for x, need in zip(inputs, needs)]
            with torch.enable_grad():
                res = ctx.fn(*blocks, *ctx.args)
            wrt = [b for b, need in zip(blocks, needs) if need]
            block_grads = iter(torch.autograd.grad(res, wrt, [g[bs, ts] for g in grad_outputs],
                                                   allow_unused=True))
            for grad, need in zip(grads, needs):
                if need:
                    g = next(block_grads)
                    grad[bs, ts] = 0.0 if g is None else g
        return (None, None, None, *grads)


class _LogProbEntropy(torch.autograd.Function):
    """`gather_logprobs` with a hand-derived backward (the hot path of every objective). Per position, with
    z = logits/τ and log π = z − logsumexp z:
        ∂ℓ_y/∂z_v = 1[v = y] − π_v          ∂H/∂z_v = −π_v (log π_v + H)
    and ∂/∂logits = (∂/∂z)/τ. Blocks as in `_ChunkedRows`; the gradient is written into one buffer. Gradients
    are not materialised: an output the loss does not use (the entropy when it is only a metric) arrives in
    backward as None and its term is skipped, instead of being multiplied by a tensor of zeros."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature, vocab_size, with_entropy, chunk_rows):
        B, T = logits.shape[:2]
        dtype = _float_dtype(logits)
        logprobs = torch.empty((B, T), dtype=dtype, device=logits.device)
        lse_BT = torch.empty((B, T), dtype=dtype, device=logits.device)
        entropy = torch.empty((B, T), dtype=dtype, device=logits.device) if with_entropy else None
        for bs, ts in _blocks(B, T, chunk_rows):
            z = _scaled_logits(logits[bs, ts], temperature, vocab_size, copy=with_entropy)
            lse = torch.logsumexp(z, dim=-1, keepdim=True)
            lse_BT[bs, ts] = lse.squeeze(-1)
            logprobs[bs, ts] = (z.gather(-1, tokens[bs, ts].unsqueeze(-1)) - lse).squeeze(-1)
            if with_entropy:
                logp = z.sub_(lse)
                p = logp.exp()
                entropy[bs, ts] = -(p * logp.masked_fill_(p == 0, 0.0)).sum(-1)  # 0·log 0 = 0 (masked ids)
        ctx.temperature, ctx.vocab_size, ctx.with_entropy, ctx.chunk_rows = (
            temperature, vocab_size, with_entropy, chunk_rows)
        ctx.save_for_backward(logits, tokens, lse_BT, entropy)
        ctx.set_materialize_grads(False)
        return (logprobs, entropy) if with_entropy else logprobs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logprobs, grad_entropy=None):
        logits, tokens, lse_BT, entropy = ctx.saved_tensors
        if grad_logprobs is None and grad_entropy is None:
            return None, None, None, None, None, None
        if grad_logprobs is None:
            grad_logprobs = torch.zeros_like(lse_BT)
        padded = ctx.vocab_size is not None and ctx.vocab_size < logits.shape[-1]
        grad_logits = torch.zeros_like(logits) if padded else torch.empty_like(logits)
        V = ctx.vocab_size if padded else logits.shape[-1]
        B, T = logits.shape[:2]
        for bs, ts in _blocks(B, T, ctx.chunk_rows):
            logp = _scaled_logits(logits[bs, ts], ctx.temperature, ctx.vocab_size, copy=True)
            logp.sub_(lse_BT[bs, ts].unsqueeze(-1))
            g_lp = grad_logprobs[bs, ts].to(logp.dtype).unsqueeze(-1) / ctx.temperature  # 1/τ folded in
            if grad_entropy is not None:  # ∂/∂z_v = 1[v = y]·g_ℓ − π_v·(g_ℓ + g_H·(log π_v + H))
                p = logp.exp()
                g_h = grad_entropy[bs, ts].to(logp.dtype).unsqueeze(-1) / ctx.temperature
                coef = logp.masked_fill_(p == 0, 0.0).add_(entropy[bs, ts].unsqueeze(-1)).mul_(g_h).add_(g_lp)
                grad = p.mul_(coef).neg_()
            else:  # ∂/∂z_v = 1[v = y]·g_ℓ − π_v·g_ℓ
                grad = logp.exp_().mul_(-g_lp)
            grad.scatter_add_(-1, tokens[bs, ts].unsqueeze(-1), g_lp)
            grad_logits[bs, ts, :V] = grad
        return grad_logits, None, None, None, None, None


def _scaled_logits(logits: torch.Tensor, temperature: float, vocab_size: int | None,
                   copy: bool = False) -> torch.Tensor:
    """A (b, t, V) block in the compute dtype, restricted to the first `vocab_size` ids, divided by the
    temperature; with `copy=True` always a fresh tensor (safe to modify in place)."""
    z = logits[..., :vocab_size] if vocab_size is not None else logits
    z = z.to(_float_dtype(logits))
    if temperature != 1.0:
        return z / temperature
    return z.clone() if copy and z.data_ptr() == logits.data_ptr() else z


def _check_logits(logits_BTV: torch.Tensor, temperature: float, vocab_size: int | None, where: str) -> int:
    if logits_BTV.dim() != 3:
        raise ValueError(f"{where}: logits must be (batch, time, vocab), got shape {tuple(logits_BTV.shape)}")
    if not temperature > 0:
        raise ValueError(f"{where}: temperature must be > 0, got {temperature}")
    V = logits_BTV.shape[-1]
    if vocab_size is not None and not 1 <= vocab_size <= V:
        raise ValueError(f"{where}: vocab_size={vocab_size} must be in [1, {V}] (the logits' last dimension)")
    return V if vocab_size is None else vocab_size


def gather_logprobs(logits_BTV: torch.Tensor, tokens_BT: torch.Tensor, temperature: float = 1.0,
                    chunk_size: int | None = None, *, with_entropy: bool = False,
                    vocab_size: int | None = None):
    """log π(y_t) = z_t[y_t]/τ − logsumexp(z_t/τ), and optionally the entropy H_t = −Σ_v π(v) log π(v).

    `logits_BTV[:, t]` must be the logits that predict `tokens_BT[:, t]` (shift before calling). Computed in
    blocks of `chunk_size` (batch, time) rows (default: as many as fit in `CHUNK_BYTES` of float32): forward
    keeps only the (B, T) log-sum-exp, backward recomputes the softmax block by block (hand-derived
    gradient, written into one gradient buffer). No float32 copy or log-softmax of the whole (B, T, V) batch
    is ever made or held. Results are float32 (float64 for float64 logits); `vocab_size` keeps only the
    first ids (embedding rows padded past the tokenizer get zero gradient). Returns `logprobs_BT`, or
    `(logprobs_BT, entropy_BT)` with `with_entropy=True`; both differentiable. [code] verl/TRL
    `logprobs_from_logits` / `selective_log_softmax` (row loops); blocks and recomputation [our design]."""
    where = "gather_logprobs"
    V = _check_logits(logits_BTV, temperature, vocab_size, where)
    _check_shape("tokens_BT", tokens_BT, logits_BTV.shape[:2], where)
    if tokens_BT.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{where}: tokens_BT must be an integer tensor, got {tokens_BT.dtype}")
    if tokens_BT.numel() and (int(tokens_BT.min()) < 0 or int(tokens_BT.max()) >= V):
        raise ValueError(f"{where}: token ids must be in [0, {V}), got min {int(tokens_BT.min())} "
                         f"max {int(tokens_BT.max())}")
    rows = _rows_per_chunk(V, chunk_size, where)
    return _LogProbEntropy.apply(logits_BTV, tokens_BT.long(), float(temperature), vocab_size, with_entropy,
                                 rows)


def token_entropy(logits_BTV: torch.Tensor, temperature: float = 1.0, chunk_size: int | None = None, *,
                  vocab_size: int | None = None) -> torch.Tensor:
    """Per-position entropy H_t = −Σ_v π_t(v) log π_t(v) of softmax(z_t/τ), chunked like `gather_logprobs`
    (differentiable). Use `gather_logprobs(..., with_entropy=True)` when the log-probs are needed too."""
    zeros_BT = torch.zeros(logits_BTV.shape[:2], dtype=torch.long, device=logits_BTV.device)
    return gather_logprobs(logits_BTV, zeros_BT, temperature, chunk_size, with_entropy=True,
                           vocab_size=vocab_size)[1]


# ============================================================================ masking and aggregation


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ mask·x (over `dim`, or everything). Entries where mask = 0 count as 0 even if x is inf/NaN there."""
    if x.shape != mask.shape:
        raise ValueError(f"masked_sum: x has shape {tuple(x.shape)} but mask has {tuple(mask.shape)}")
    keep = mask != 0
    prod = torch.where(keep, x * mask.to(x.dtype), torch.zeros((), dtype=x.dtype, device=x.device))
    return prod.sum() if dim is None else prod.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, normaliser: float | torch.Tensor | None = None,
                dim: int | None = None) -> torch.Tensor:
    """Σ mask·x / normaliser. Without a normaliser it is the local Σ mask (an all-zero mask gives 0, not NaN);
    pass the global count explicitly whenever the result is a loss that is accumulated (grpo_family.md §2.3)."""
    total = masked_sum(x, mask, dim)
    if normaliser is None:
        count = mask.to(total.dtype).sum() if dim is None else mask.to(total.dtype).sum(dim)
        return total / torch.where(count == 0, torch.ones_like(count), count)
    return total / _as_normaliser(normaliser, total, "masked_mean")


def loss_normaliser(mask: torch.Tensor | Iterable[torch.Tensor], mode: Aggregation,
                    L_norm: int | None = None) -> torch.Tensor:
    """The normaliser of one optimizer-step batch (grpo_family.md §2.3), computed once over all its
    micro-batches (pass the list of their masks, or one mask) and then given to every micro-batch's
    `aggregate`. It is additive: the global value over data-parallel ranks is the all-reduce SUM of the
    per-rank values. With DDP (which averages gradients over W ranks) pass `global / W` to `aggregate`.

    token_mean: N_tok = Σ mask;  seq_mean_token_mean, seq_mean_token_sum: N_seq = number of sequences
    with at least one loss token;  seq_mean_token_sum_norm: N_seq · L_norm (L_norm = max_new_tokens)."""
    where = "loss_normaliser"
    _check_choice("mode", mode, AGGREGATIONS, where)
    masks = [mask] if isinstance(mask, torch.Tensor) else list(mask)
    if not masks:
        raise ValueError(f"{where}: got no masks")
    total = torch.zeros((), dtype=torch.float64, device=masks[0].device)
    for m in masks:
        if m.dim() != 2:
            raise ValueError(f"{where}: masks must be (batch, time), got shape {tuple(m.shape)}")
        if mode == "token_mean":
            total = total + m.to(torch.float64).sum()
        else:
            total = total + (m != 0).any(dim=1).to(torch.float64).sum()
    if mode == "seq_mean_token_sum_norm":
        if L_norm is None or L_norm <= 0:
            raise ValueError(f"{where}: mode 'seq_mean_token_sum_norm' needs L_norm > 0 (max_new_tokens), "
                             f"got {L_norm}")
        total = total * L_norm
    return total


def aggregate(loss_BT: torch.Tensor, mask_BT: torch.Tensor, mode: Aggregation,
              normaliser: float | torch.Tensor | None = None, L_norm: int | None = None) -> torch.Tensor:
    """Reduce per-token losses to this micro-batch's share of the optimizer-step loss (grpo_family.md §2.3):

        Σ_i Σ_t coef_i · m_it · l_it / normaliser,    coef_i = 1/|y_i| for seq_mean_token_mean, else 1,

    with |y_i| = Σ_t m_it. `normaliser` is the global value from `loss_normaliser` over the whole
    optimizer-step batch; None means this call *is* the whole batch. Summing the gradients of the
    micro-batches (never dividing by their count) then gives exactly the gradient of the full batch.
    Micro-batches must split along the batch axis (whole sequences)."""
    where = "aggregate"
    _check_choice("mode", mode, AGGREGATIONS, where)
    if loss_BT.dim() != 2:
        raise ValueError(f"{where}: loss_BT must be (batch, time), got shape {tuple(loss_BT.shape)}")
    _check_shape("mask_BT", mask_BT, loss_BT.shape, where)
    if normaliser is None:  # this call is the whole batch; an empty mask gives 0, not NaN
        normaliser = loss_normaliser(mask_BT, mode, L_norm).to(loss_BT.dtype).clamp_min(1e-30)
    else:
        normaliser = _as_normaliser(normaliser, loss_BT, where)
    if mode == "seq_mean_token_mean":
        per_seq_B = masked_sum(loss_BT, mask_BT, dim=1)
        length_B = mask_BT.to(loss_BT.dtype).sum(dim=1)
        per_seq_B = torch.where(length_B > 0, per_seq_B / length_B.clamp_min(1e-30), torch.zeros_like(per_seq_B))
        return per_seq_B.sum() / normaliser
    return masked_sum(loss_BT, mask_BT) / normaliser


# ============================================================================ advantages and rewards


def _std(x: torch.Tensor, ddof: int, dim: int | None = None) -> torch.Tensor:
    return x.std(correction=ddof) if dim is None else x.std(dim=dim, correction=ddof, keepdim=True)


def _normalise(x: torch.Tensor, mean, std, eps: float) -> torch.Tensor:
    """(x − mean)/(std + eps), with 0 where std is 0 (never NaN, also with eps = 0)."""
    denom = std + eps
    return torch.where(std > 0, (x - mean) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                       torch.zeros_like(x))


def group_advantages(rewards_BG: torch.Tensor, kind: str, std_ddof: int = 1, eps: float = 1e-6,
                     baseline: str | None = None) -> torch.Tensor:
    """Per-completion advantages A_BG from rewards of B prompts × G completions (grpo_family.md §2.1).

    grpo, dapo      (R_i − mean_G R) / (std_G R + ε), std with `std_ddof` (1)          [paper] form, [code] ddof/ε
    dr_grpo         R_i − mean_G R                                                       [paper]
    rloo            R_i − (1/(G−1)) Σ_{j≠i} R_j                                          [paper]
    reinforce_pp    (R − mean_B R) / (std_B R + ε) over all B·G rewards                  [paper]
      baseline="group": a = R − mean_G R first, then (a − mean_B a)/(std_B a + ε)        [code] OpenRLHF/verl

    A group of identical rewards gets exactly 0 for grpo/dapo/dr_grpo/rloo (never NaN). reinforce_pp's
    statistics are over the batch it is given: pass the global batch (all ranks) as the method says."""
    where = "group_advantages"
    _check_choice("kind", kind, ADVANTAGE_KINDS, where)
    if rewards_BG.dim() != 2 or rewards_BG.numel() == 0:
        raise ValueError(f"{where}: rewards_BG must be a non-empty (prompts, group) matrix, "
                         f"got shape {tuple(rewards_BG.shape)}")
    if not torch.isfinite(rewards_BG).all():
        raise ValueError(f"{where}: rewards_BG has non-finite values")
    if baseline not in (None, "group"):
        raise ValueError(f"{where}: baseline={baseline!r} is not one of None, 'group'")
    if baseline is not None and kind != "reinforce_pp":
        raise ValueError(f"{where}: baseline={baseline!r} only applies to kind='reinforce_pp', not {kind!r}")
    R = rewards_BG.to(_float_dtype(rewards_BG))
    G = R.shape[1]
    if kind in ("grpo", "dapo", "rloo") and G < 2:
        raise ValueError(f"{where}: kind={kind!r} needs a group size G >= 2, got G={G}")
    constant_B1 = (R == R[:, :1]).all(dim=1, keepdim=True)
    mean_B1 = R.mean(dim=1, keepdim=True)
    if kind in ("grpo", "dapo"):
        A = _normalise(R, mean_B1, _std(R, std_ddof, dim=1), eps)
    elif kind == "dr_grpo":
        A = R - mean_B1
    elif kind == "rloo":
        A = R - (R.sum(dim=1, keepdim=True) - R) / (G - 1)
    else:  # reinforce_pp
        a = R - mean_B1 if baseline == "group" else R
        if a.numel() < 2:
            raise ValueError(f"{where}: reinforce_pp needs at least 2 rewards in the batch")
        return _normalise(a, a.mean(), _std(a, std_ddof), eps)
    return torch.where(constant_B1, torch.zeros_like(A), A)


def overlong_penalty(lengths: torch.Tensor, L_max: int, L_cache: int) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the reward [paper] arXiv 2503.14476:
    0 if |y| ≤ L_max − L_cache;  ((L_max − L_cache) − |y|)/L_cache if L_max − L_cache < |y| ≤ L_max;  −1 beyond."""
    if not 0 < L_cache <= L_max:
        raise ValueError(f"overlong_penalty: need 0 < L_cache <= L_max, got L_cache={L_cache}, L_max={L_max}")
    lengths = torch.as_tensor(lengths).to(torch.float64)
    soft = float(L_max - L_cache)
    penalty = torch.clamp((soft - lengths) / L_cache, max=0.0)
    return torch.where(lengths > L_max, torch.full_like(penalty, -1.0), penalty)


# ============================================================================ policy loss


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(πθ ‖ πref) from tokens sampled from πθ, u = ℓref − ℓθ
    (J. Schulman, "Approximating KL divergence"):  k1 = −u;  k2 = u²/2;  k3 = eᵘ − 1 − u.
    k1 and k3 are unbiased for the KL; used as a loss, E[∇k2] = ∇KL(πθ‖πref) and E[∇k3] = ∇KL(πref‖πθ)."""
    _check_choice("kind", kind, KL_ESTIMATORS, "kl_estimate")
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"kl_estimate: logprobs {tuple(logprobs.shape)} and ref_logprobs "
                         f"{tuple(ref_logprobs.shape)} differ in shape")
    u = ref_logprobs - logprobs
    if kind == "k1":
        return -u
    if kind == "k2":
        return 0.5 * u * u
    return torch.expm1(u) - u


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_eps_low: float = 0.2, clip_eps_high: float = 0.2,
                dual_clip_c: float | None = None, sampler_logprobs: torch.Tensor | None = None,
                tis_cap: float | None = 5.0, ref_logprobs: torch.Tensor | None = None, kl_coef: float = 0.0,
                kl_estimator: str = "k3", entropy: torch.Tensor | None = None, entropy_coef: float = 0.0,
                aggregation: Aggregation = "token_mean", normaliser: float | torch.Tensor | None = None,
                L_norm: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The one clipped policy-gradient loss of every objective (grpo_family.md §2.2), all tensors (B, T)
    except `advantages`, which is (B,) (broadcast over tokens) or (B, T):

        log ρ = clamp(ℓθ − ℓold, ±20)                                                  [code] verl
        l     = max(−A·ρ, −A·clip(ρ, 1 − ε_low, 1 + ε_high))                          [paper] PPO, DAPO
        l     = min(l, −c·A)  where A < 0, if dual_clip_c = c (> 1)                   [paper] 1912.09729
        w     = min(exp(ℓold − ℓsamp), C) detached, if sampler_logprobs are given     [code] verl token TIS
        l     = w·l + β·k(ℓθ, ℓref) − γ_H·H                                           [paper] DeepSeekMath KL
        loss  = aggregate(l, mask, aggregation, normaliser, L_norm)

    Returns `(loss, metrics)`; metrics are detached 0-dim tensors, token means over this call's mask:
    clip_frac_low / clip_frac_high (the clipped branch is active), clip_frac_dual, tis_capped_frac,
    tis_weight_mean, approx_kl_old_new (k3 estimate of KL(πold‖πθ)), pg_loss (aggregated like the
    loss), and kl_ref / entropy when given."""
    where = "policy_loss"
    if logprobs.dim() != 2:
        raise ValueError(f"{where}: logprobs must be (batch, time), got shape {tuple(logprobs.shape)}")
    shape = logprobs.shape
    _check_shape("old_logprobs", old_logprobs, shape, where)
    _check_shape("mask", mask, shape, where)
    for name, t in (("sampler_logprobs", sampler_logprobs), ("ref_logprobs", ref_logprobs), ("entropy", entropy)):
        if t is not None:
            _check_shape(name, t, shape, where)
    if advantages.shape == shape[:1]:
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != shape:
        raise ValueError(f"{where}: advantages has shape {tuple(advantages.shape)}, expected "
                         f"{(shape[0],)} or {tuple(shape)}")
    if clip_eps_low < 0 or clip_eps_high < 0 or clip_eps_low >= 1:
        raise ValueError(f"{where}: need 0 <= clip_eps_low < 1 and clip_eps_high >= 0, got "
                         f"{clip_eps_low}, {clip_eps_high}")
    if dual_clip_c is not None and not dual_clip_c > 1:
        raise ValueError(f"{where}: dual_clip_c must be > 1 (or None), got {dual_clip_c}")
    if tis_cap is not None and not tis_cap > 0:
        raise ValueError(f"{where}: tis_cap must be > 0 (or None), got {tis_cap}")
    if kl_coef and ref_logprobs is None:
        raise ValueError(f"{where}: kl_coef={kl_coef} needs ref_logprobs")
    if entropy_coef and entropy is None:
        raise ValueError(f"{where}: entropy_coef={entropy_coef} needs entropy")
    _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS, where)

    A = advantages.detach().to(logprobs.dtype)
    log_ratio = torch.clamp(logprobs - old_logprobs.detach(), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = log_ratio.exp()
    unclipped = -A * ratio
    clipped = -A * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    loss_BT = torch.maximum(unclipped, clipped)
    is_low = (A < 0) & (ratio < 1.0 - clip_eps_low)
    is_high = (A > 0) & (ratio > 1.0 + clip_eps_high)
    is_dual = torch.zeros_like(is_low)
    if dual_clip_c is not None:
        is_dual = (A < 0) & (loss_BT > -dual_clip_c * A)
        loss_BT = torch.where(A < 0, torch.minimum(loss_BT, -dual_clip_c * A), loss_BT)

    metrics: dict[str, torch.Tensor] = {}
    if sampler_logprobs is not None:
        tis_log = torch.clamp(old_logprobs - sampler_logprobs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).detach()
        raw_w = tis_log.exp().to(logprobs.dtype)
        w = raw_w if tis_cap is None else torch.clamp(raw_w, max=tis_cap)
        loss_BT = w * loss_BT
        metrics["tis_capped_frac"] = masked_mean((raw_w > w).to(w.dtype), mask)
        metrics["tis_weight_mean"] = masked_mean(w, mask)
    pg_loss_BT = loss_BT
    if kl_coef:
        kl_BT = kl_estimate(logprobs, ref_logprobs, kl_estimator)
        loss_BT = loss_BT + kl_coef * kl_BT
    if entropy_coef:
        loss_BT = loss_BT - entropy_coef * entropy

    loss = aggregate(loss_BT, mask, aggregation, normaliser, L_norm)
    with torch.no_grad():
        as_float = lambda b: b.to(logprobs.dtype)  # noqa: E731
        metrics["pg_loss"] = aggregate(pg_loss_BT, mask, aggregation, normaliser, L_norm)
        metrics["clip_frac_low"] = masked_mean(as_float(is_low), mask)
        metrics["clip_frac_high"] = masked_mean(as_float(is_high), mask)
        metrics["clip_frac_dual"] = masked_mean(as_float(is_dual), mask)
        metrics["approx_kl_old_new"] = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
        if ref_logprobs is not None:
            metrics["kl_ref"] = masked_mean(kl_estimate(logprobs, ref_logprobs, kl_estimator), mask)
        if entropy is not None:
            metrics["entropy"] = masked_mean(entropy, mask)
    return loss, {k: v.detach() for k, v in metrics.items()}


# ============================================================================ LPO


def sequence_logratio(logprobs_NT: torch.Tensor, behaviour_logprobs_NT: torch.Tensor,
                      mask_NT: torch.Tensor) -> torch.Tensor:
    """s = Σ_t m_t (ℓθ_t − ℓb_t): the log-ratio log πθ(y) − log π_b(y) of whole sequences, no length
    normalisation, no clipping (lpo.md R2). Reshape the (N,) result to (B, G) for `lpo_weights`/`lpo_loss`."""
    _check_shape("behaviour_logprobs_NT", behaviour_logprobs_NT, logprobs_NT.shape, "sequence_logratio")
    return masked_sum(logprobs_NT - behaviour_logprobs_NT.detach(), mask_NT, dim=-1)


def lpo_target(rewards_BG: torch.Tensor, tau: str | float = "std", std_ddof: int = 1,
               identical_groups: str = "mask") -> tuple[torch.Tensor, torch.Tensor]:
    """The Gibbs target w* = softmax(R/τ) per group and which groups carry loss (lpo.md §2, R3).

    τ rules: `std` σ_G (ddof `std_ddof`; pairs with GRPO/DAPO), `one` 1 (Dr. GRPO/RLOO), `mean` μ_G (rewards
    must lie in [0, 1]; MaxRL), or a float > 0 [secondary]. Groups with identical rewards: `mask` gives them
    w* = 1/G and valid = False (weight 0, not in the normaliser); `project` keeps them with the uniform
    target [our design]. Returns (w*_BG detached, valid_B bool)."""
    where = "lpo_target"
    if rewards_BG.dim() != 2 or rewards_BG.shape[1] < 2:
        raise ValueError(f"{where}: rewards_BG must be (prompts, group >= 2), got {tuple(rewards_BG.shape)}")
    _check_choice("identical_groups", identical_groups, ("mask", "project"), where)
    R = rewards_BG.detach().to(_float_dtype(rewards_BG))
    identical_B = (R == R[:, :1]).all(dim=1)
    if isinstance(tau, str):
        _check_choice("tau", tau, LPO_TAU_RULES, where)
        if tau == "std":
            tau_B1 = _std(R, std_ddof, dim=1)
        elif tau == "one":
            tau_B1 = torch.ones_like(R[:, :1])
        else:
            if ((R < 0) | (R > 1)).any():
                raise ValueError(f"{where}: tau='mean' needs rewards in [0, 1]; got min {R.min().item()}, "
                                 f"max {R.max().item()}")
            tau_B1 = R.mean(dim=1, keepdim=True)
    else:
        if not float(tau) > 0:
            raise ValueError(f"{where}: a numeric tau must be > 0, got {tau}")
        tau_B1 = torch.full_like(R[:, :1], float(tau))
    safe_tau_B1 = torch.where(identical_B[:, None], torch.ones_like(tau_B1), tau_B1)
    logits_BG = torch.where(identical_B[:, None], torch.zeros_like(R), R / safe_tau_B1)
    target_BG = torch.softmax(logits_BG, dim=1)
    valid_B = ~identical_B if identical_groups == "mask" else torch.ones_like(identical_B)
    return target_BG, valid_B


def lpo_normaliser(rewards_BG: torch.Tensor | Iterable[torch.Tensor], identical_groups: str = "mask") -> torch.Tensor:
    """LPO's normaliser for one optimizer step: the number of groups that carry loss (lpo.md §2 defaults) —
    groups whose rewards are not all equal under `identical_groups="mask"`, all groups under `"project"`.
    Additive over micro-batches (pass their reward matrices) and ranks (all-reduce SUM)."""
    _check_choice("identical_groups", identical_groups, ("mask", "project"), "lpo_normaliser")
    mats = [rewards_BG] if isinstance(rewards_BG, torch.Tensor) else list(rewards_BG)
    total = torch.zeros((), dtype=torch.float64)
    for R in mats:
        if R.dim() != 2:
            raise ValueError(f"lpo_normaliser: rewards must be (prompts, group), got shape {tuple(R.shape)}")
        counted = torch.ones(R.shape[0], dtype=torch.bool, device=R.device) if identical_groups == "project" \
            else ~(R == R[:, :1]).all(dim=1)
        total = total + counted.to(torch.float64).sum().cpu()
    return total


def lpo_weights(rewards_BG: torch.Tensor, seq_logratio_BG: torch.Tensor, kind: str = "fwd",
                tau: str | float = "std", std_ddof: int = 1, identical_groups: str = "mask") -> torch.Tensor:
    """Closed-form listwise coefficients c_k = ∂L/∂s_k, so that ∇θL = Σ_k c_k ∇θ log πθ(y_k) (lpo.md §2):

        P = softmax(s),  w* = softmax(R/τ),  φ = R/τ  (s_t = 0 at the start of an iteration)   [secondary]
        fwd  L = KL(w* ‖ P):   c_k = P_k − w*_k                  (|c_k| ≤ 1, Σ|c| ≤ 2, → 0 at P = w*)
        rev  L = KL(P ‖ w*):   c_k = P_k (d_k − d̄),  d = s − log w*,  d̄ = Σ_j P_j d_j

    (d uses log w* = φ − logsumexp φ; the constant cancels in d − d̄.) Σ_k c_k = 0. Degenerate groups
    get c = 0 under identical_groups="mask". Returns detached c_BG."""
    where = "lpo_weights"
    _check_choice("kind", kind, LPO_KINDS, where)
    _check_shape("seq_logratio_BG", seq_logratio_BG, rewards_BG.shape, where)
    target_BG, valid_B = lpo_target(rewards_BG, tau, std_ddof, identical_groups)
    s = seq_logratio_BG.detach().to(target_BG.dtype)
    P = torch.softmax(s, dim=1)
    if kind == "fwd":
        c = P - target_BG
    else:
        d = s - target_BG.log()
        c = P * (d - (P * d).sum(dim=1, keepdim=True))
    return torch.where(valid_B[:, None], c, torch.zeros_like(c))


def lpo_loss(rewards_BG: torch.Tensor, seq_logratio_BG: torch.Tensor, kind: str = "fwd",
             tau: str | float = "std", std_ddof: int = 1, identical_groups: str = "mask",
             normaliser: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LPO's listwise divergence, differentiable in the sequence log-ratios s (lpo.md §2, R1):

        loss = Σ_{valid groups} D_g / normaliser,   D = KL(w* ‖ softmax(s)) (fwd) or KL(softmax(s) ‖ w*) (rev)

    `normaliser` is the global number of valid groups of the optimizer step (`lpo_normaliser`; default:
    this call's);
    its gradient in s is `lpo_weights / normaliser`. Metrics (detached, means over valid groups):
    entropy_P, entropy_target, kl_target_P (= KL(w*‖P) whichever kind), abs_coef_sum (Σ_k|c_k|),
    max_abs_logratio, masked_group_frac."""
    where = "lpo_loss"
    _check_choice("kind", kind, LPO_KINDS, where)
    _check_shape("seq_logratio_BG", seq_logratio_BG, rewards_BG.shape, where)
    target_BG, valid_B = lpo_target(rewards_BG, tau, std_ddof, identical_groups)
    target_BG = target_BG.to(seq_logratio_BG.dtype)
    log_target_BG = target_BG.log()
    log_P_BG = torch.log_softmax(seq_logratio_BG, dim=1)
    P_BG = log_P_BG.exp()
    if kind == "fwd":
        div_B = (target_BG * (log_target_BG - log_P_BG)).sum(dim=1)
    else:
        div_B = (P_BG * (log_P_BG - log_target_BG)).sum(dim=1)
    valid = valid_B.to(div_B.dtype)
    normaliser = valid.sum().clamp_min(1.0) if normaliser is None else _as_normaliser(normaliser, div_B, where)
    loss = (div_B * valid).sum() / normaliser
    with torch.no_grad():
        c = lpo_weights(rewards_BG, seq_logratio_BG, kind, tau, std_ddof, identical_groups)
        kl_tp_B = (target_BG * (log_target_BG - log_P_BG)).sum(dim=1)
        metrics = {
            "entropy_P": masked_mean(-(P_BG * log_P_BG).sum(dim=1), valid),
            "entropy_target": masked_mean(-(target_BG * log_target_BG).sum(dim=1), valid),
            "kl_target_P": masked_mean(kl_tp_B, valid),
            "abs_coef_sum": masked_mean(c.abs().sum(dim=1).to(div_B.dtype), valid),
            "max_abs_logratio": seq_logratio_BG.detach().abs().max(),
            "masked_group_frac": 1.0 - valid.mean(),
        }
    return loss, metrics


# ============================================================================ OPD and G-OPD


def discounted_future_sum(x_BT: torch.Tensor, gamma: float, block: int = 128) -> torch.Tensor:
    """y_t = Σ_{k≥t} γ^{k−t} x_k along the last axis (no grad). Blocked: within a block of `block` positions a
    small triangular matrix of powers, across blocks one carried value, so it is exact, O(T·block) and never
    forms γ^{−t}. [code] tinker `_discounted_future_sum_vectorized`."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"discounted_future_sum: gamma must be in [0, 1], got {gamma}")
    x = x_BT.detach()
    T = x.shape[-1]
    out = torch.empty_like(x)
    if T == 0:
        return out
    idx = torch.arange(block, device=x.device)
    expo = (idx[None, :] - idx[:, None]).to(x.dtype)  # k − t
    powers = torch.where(expo >= 0, torch.full_like(expo, gamma) ** expo.clamp_min(0), torch.zeros_like(expo))
    carry = torch.zeros_like(x[..., 0])
    for start in range((T - 1) // block * block, -1, -block):
        stop = min(start + block, T)
        n = stop - start
        seg = x[..., start:stop] @ powers[:n, :n].T  # seg_t = Σ_{k≥t in block} γ^{k−t} x_k
        tail = gamma ** (n - torch.arange(n, device=x.device, dtype=x.dtype))  # γ^{stop−t}
        out[..., start:stop] = seg + tail * carry[..., None]
        carry = out[..., start]
    return out


def gopd_token_advantages(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor,
                          ref_logprobs: torch.Tensor | None, lam: float, *, mask: torch.Tensor | None = None,
                          discount: float | None = None) -> torch.Tensor:
    """G-OPD / ExOPD per-token advantage (opd.md §2.2; [paper] objective, [code] `RUCBM/G-OPD` token form):

        r_t = λ·(ℓT_t − ℓref_t) − (ℓold_t − ℓref_t)  =  λ·ℓT_t + (1−λ)·ℓref_t − ℓold_t

    the per-token reward of J = E[λ log(πT/πref)] − KL(πθ‖πref), whose optimum is
    log π* = λ log πT + (1−λ) log πref − log Z. λ = 1 is OPD: r_t = ℓT_t − ℓold_t, computed without the
    reference (which may be None) so it is bit-identical to `opd_token_advantages`. `student_logprobs` are
    the sampling policy's ℓold (detached). With `discount` γ > 0: A_t = Σ_{k≥t} γ^{k−t} r_k, else A_t = r_t.
    Masked positions (mask = 0) get r = 0. Returns A_BT (no grad)."""
    where = "gopd_token_advantages"
    _check_shape("teacher_logprobs", teacher_logprobs, student_logprobs.shape, where)
    student, teacher = student_logprobs.detach(), teacher_logprobs.detach()
    if lam == 1.0:
        r = teacher - student
    else:
        if ref_logprobs is None:
            raise ValueError(f"{where}: lam={lam} != 1 needs ref_logprobs (G-OPD never falls back to plain OPD)")
        _check_shape("ref_logprobs", ref_logprobs, student_logprobs.shape, where)
        ref = ref_logprobs.detach()
        r = lam * (teacher - ref) - (student - ref)
    if mask is not None:
        _check_shape("mask", mask, student_logprobs.shape, where)
        r = torch.where(mask != 0, r, torch.zeros_like(r))
    if discount:
        r = discounted_future_sum(r, discount)
    return r


def opd_token_advantages(student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor,
                         mask: torch.Tensor | None = None, estimator: str = "sampled",
                         discount: float | None = None) -> torch.Tensor:
    """On-policy distillation advantage, sampled-token reverse KL (opd.md §2.1, [code] tinker):

        A_t = ℓT_t − ℓold_t   (γ = 0)      A_t = Σ_{k≥t} γ^{k−t} (ℓT_k − ℓold_k)   (γ = `discount` > 0)

    fed (stop-grad) into `policy_loss` with token_mean. Since E_{y~πθ}[∇log πθ(y)] = 0, the expected
    gradient of −A·log πθ is ∇KL(πθ‖πT) per position [paper]. This is `gopd_token_advantages` with λ = 1.
    Only `estimator="sampled"` yields advantages: `topk` and `full` are losses (`topk_forward_kl`,
    `generalized_jsd`)."""
    if estimator != "sampled":
        raise ValueError(f"opd_token_advantages: estimator={estimator!r} has no token advantages; use "
                         "topk_forward_kl (estimator 'topk') or generalized_jsd ('full') as the loss")
    return gopd_token_advantages(student_logprobs, teacher_logprobs, None, 1.0, mask=mask, discount=discount)


def topk_logprobs(logits_BTV: torch.Tensor, k: int, temperature: float = 1.0, chunk_size: int | None = None, *,
                  vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's top-k (log-probs, ids), each (B, T, K), log-probs normalised over the whole vocabulary
    (what a remote scorer returns); chunked, no grad."""
    V = _check_logits(logits_BTV, temperature, vocab_size, "topk_logprobs")
    if not 1 <= k <= V:
        raise ValueError(f"topk_logprobs: k={k} must be in [1, {V}]")

    def block(logits):
        z = _scaled_logits(logits, temperature, vocab_size)
        values, ids = torch.topk(z, k, dim=-1)
        return values - torch.logsumexp(z, dim=-1, keepdim=True), ids

    with torch.no_grad():
        return _ChunkedRows.apply(block, (), _rows_per_chunk(V, chunk_size, "topk_logprobs"), logits_BTV)


def _topk_kl_block(logits, t_logprobs, t_ids, temperature, vocab_size, tail):
    z = _scaled_logits(logits, temperature, vocab_size)
    lse = torch.logsumexp(z, dim=-1)
    s_logprobs = z.gather(-1, t_ids) - lse.unsqueeze(-1)  # log πθ(v), v ∈ S
    t_lp = t_logprobs.to(z.dtype)
    if not tail:
        t_lp = torch.log_softmax(t_lp, dim=-1)  # p̃T: renormalised on S
        return ((t_lp.exp() * (t_lp - s_logprobs)).sum(-1),)
    p_t = t_lp.exp()
    body = (p_t * (t_lp - s_logprobs)).sum(-1)
    if t_ids.shape[-1] >= z.shape[-1]:  # S is the whole vocabulary: no tail
        return (body,)
    p_tail = 1.0 - p_t.sum(-1)
    has_tail = p_tail > t_ids.shape[-1] * torch.finfo(z.dtype).eps  # beyond the rounding of Σ_S pT
    off_s = z.scatter(-1, t_ids, torch.finfo(z.dtype).min)  # S removed (finite fill: never NaN)
    s_tail_log = torch.logsumexp(off_s, dim=-1) - lse  # log πθ,tail
    tail_term = p_tail * (torch.where(has_tail, p_tail, torch.ones_like(p_tail)).log() - s_tail_log)
    return (body + torch.where(has_tail, tail_term, torch.zeros_like(tail_term)),)


def topk_forward_kl(student_logits_BTV: torch.Tensor, teacher_topk_logprobs_BTK: torch.Tensor,
                    teacher_topk_ids_BTK: torch.Tensor, *, tail: bool = True, temperature: float = 1.0,
                    vocab_size: int | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """Per-token forward KL from the teacher's top-k S_t to the student (opd.md §2.1, estimator `topk`):

        tail=True   L_t = Σ_{v∈S} pT(v) log(pT(v)/πθ(v)) + pT,tail log(pT,tail/πθ,tail),  tail = 1 − Σ_S
                    ∂L/∂z_v = πθ(v) − pT(v) on S,  πθ(v)(1 − pT,tail/πθ,tail) off S   [code] TRL tail bucket
        tail=False  L_t = Σ_{v∈S} p̃T(v)(log p̃T(v) − log πθ(v)), p̃T = pT renormalised on S;
                    ∂L/∂z_v = πθ(v) − p̃T(v)·1[v∈S]                                     [code] verl

    `teacher_topk_logprobs_BTK` are the teacher's log-probs of its distinct `teacher_topk_ids_BTK`
    (normalised over the full vocabulary, e.g. from `topk_logprobs`); a tail mass within the rounding of
    Σ_S pT (K·machine-ε) counts as no tail. Returns the differentiable (B, T) per-token loss; aggregate
    it with `aggregate(..., "token_mean", normaliser)`. Blocks recomputed in backward (`_ChunkedRows`)."""
    where = "topk_forward_kl"
    V = _check_logits(student_logits_BTV, temperature, vocab_size, where)
    B, T = student_logits_BTV.shape[:2]
    if teacher_topk_logprobs_BTK.dim() != 3 or teacher_topk_logprobs_BTK.shape[:2] != (B, T):
        raise ValueError(f"{where}: teacher_topk_logprobs_BTK has shape {tuple(teacher_topk_logprobs_BTK.shape)},"
                         f" expected ({B}, {T}, K)")
    _check_shape("teacher_topk_ids_BTK", teacher_topk_ids_BTK, teacher_topk_logprobs_BTK.shape, where)
    if teacher_topk_ids_BTK.numel() and (int(teacher_topk_ids_BTK.min()) < 0 or int(teacher_topk_ids_BTK.max()) >= V):
        raise ValueError(f"{where}: teacher top-k ids must be in [0, {V})")
    return _ChunkedRows.apply(_topk_kl_block, (float(temperature), vocab_size, tail),
                              _rows_per_chunk(V, chunk_size, where), student_logits_BTV,
                              teacher_topk_logprobs_BTK.detach(), teacher_topk_ids_BTK.long())[0]


def _kl_from_logprobs(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) = Σ_v p(v)(log p(v) − log q(v)) over the last axis, with 0·log 0 = 0."""
    p = lp.exp()
    return torch.where(p > 0, p * (lp - lq), torch.zeros_like(p)).sum(-1)


def _jsd_block(s_logits, t_logits, temperature, vocab_size, beta):
    ls = torch.log_softmax(_scaled_logits(s_logits, temperature, vocab_size), dim=-1)
    lt = torch.log_softmax(_scaled_logits(t_logits, temperature, vocab_size), dim=-1).to(ls.dtype)
    if beta == 0.0:
        return (_kl_from_logprobs(lt, ls),)
    if beta == 1.0:
        return (_kl_from_logprobs(ls, lt),)
    b = torch.tensor(beta, dtype=ls.dtype, device=ls.device)
    lm = torch.logaddexp(lt + b.log(), ls + torch.log1p(-b))  # log(β·πT + (1−β)·πθ)
    return (beta * _kl_from_logprobs(lt, lm) + (1.0 - beta) * _kl_from_logprobs(ls, lm),)


def generalized_jsd(student_logits_BTV: torch.Tensor, teacher_logits_BTV: torch.Tensor, *, beta: float = 1.0,
                    temperature: float = 1.0, vocab_size: int | None = None,
                    chunk_size: int | None = None) -> torch.Tensor:
    """Per-token generalized JSD over the full vocabulary (opd.md §2.1, estimator `full`; [code] TRL GKD):

        M = β·πT + (1−β)·πθ,   JSD_β = β·KL(πT‖M) + (1−β)·KL(πθ‖M),
        β = 0 → KL(πT‖πθ) (forward),  β = 1 → KL(πθ‖πT) (reverse), both special-cased and exact.

    Both logits divided by `temperature`. Returns the differentiable (B, T) per-token loss (aggregate with
    token_mean). Blocks recomputed in backward (`_ChunkedRows`); both logits are needed in full, so this is
    meant for small vocabularies or short sequences."""
    where = "generalized_jsd"
    V = _check_logits(student_logits_BTV, temperature, vocab_size, where)
    _check_shape("teacher_logits_BTV", teacher_logits_BTV, student_logits_BTV.shape, where)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"{where}: beta must be in [0, 1], got {beta}")
    return _ChunkedRows.apply(_jsd_block, (float(temperature), vocab_size, float(beta)),
                              _rows_per_chunk(V, chunk_size, where, n_vocab_inputs=2), student_logits_BTV,
                              teacher_logits_BTV.detach())[0]
