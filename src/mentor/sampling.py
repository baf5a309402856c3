"""The `hf` sampler: batched, KV-cached sampling from any Hugging Face causal LM, recording the exact
per-token log-probs it sampled from (DESIGN.md §2, "Sampler").

What it implements
------------------
Ancestral sampling with temperature, optional top-k and top-p (nucleus, Holtzman et al. 2020, "The Curious
Case of Neural Text Degeneration", the `TopPLogitsWarper` variant of transformers: keep the smallest set of
highest-probability tokens whose mass reaches `top_p`, at least one), stop tokens, stop strings,
`max_new_tokens` and a `horizon` cut for prefix rollouts (ADWIN, specs/adwin.md R2). It returns, per prompt,
the completion's token ids, the log-probs of those tokens under the distribution each was drawn from, and a
finish reason.

Decisions (documented in docs/sampling.md):

- **The distribution is the plain softmax at the chosen temperature**, restricted to ids below `vocab_size`
  (embedding rows past the tokenizer's size are never sampled) and, only when asked, truncated by top-k /
  top-p and renormalised. No generation config is read: `model.generate` would silently add top-k = 50
  (PITFALLS.md). `logprobs[t]` is the log-prob of `completion_ids[t]` under exactly that (truncated,
  renormalised) distribution.
- **Greedy** (`greedy=True` or `temperature == 0`) takes the argmax; its `logprobs` are then those of the
  temperature-1 softmax (vocab-restricted, no top-k/top-p), i.e. the policy's own log-probs of the chosen tokens.
- **EOS is kept**: when a row stops on an EOS token, that token is the last entry of `completion_ids` (with
  its log-prob), so a learner trains on emitting it. A stop string is matched on the decoded completion; the
  row stops after the token that completes it and keeps every sampled token (cutting inside a token would
  make the rollout off-policy), so `text` may run a few characters past the stop string.
- **Finish reasons**: "stop" (EOS or a stop string), "horizon" (`horizon` is set, `horizon < max_new_tokens`,
  and the row reached `horizon` tokens without stopping), "length" (reached `max_new_tokens`). A stop on the
  last allowed token is "stop".
- **Order and seeds**: prompts are sorted by length (longest first) and decoded in chunks of `batch_size`;
  outputs come back in input order. The same inputs, `batch_size` and generator seed give the same samples;
  a different `batch_size` consumes random numbers in another order (a different, equally valid, sample).

Two engines, one loop
---------------------
`_decode` runs prefill, then one token per step for the active rows, and drops finished rows from the
batch (compaction) once at least an eighth of them have finished. The model call is pluggable:

- `_HFStepper` (any causal LM): `model(input_ids, attention_mask, position_ids, past_key_values=...)` with the
  model's own cache; compaction uses `Cache.batch_select_indices`.
- `_LlamaStepper` (fast path: Llama, Mistral, Qwen2, Qwen3 layouts with full attention): reads the HF weights
  once per call to `sample` (so it never sees stale weights), fuses q/k/v and gate/up projections, folds the
  attention scale into the query weights, applies rotary embeddings as one complex multiply (the q/k weight
  rows are permuted per head from the rotate-half layout to interleaved pairs — dot products, and so
  attention, are unchanged), and attends over a preallocated KV cache. This removes the per-step mask
  construction, cache objects, module calls and hooks that dominate decoding of small models on CPU.

Left padding: prompts of a chunk are left-padded into one block. Rotary positions count from each row's first
real token; attention never sees pad keys (pad queries attend to themselves only, so no row is all -inf).
The fast path is numerically the same function as the HF forward up to float rounding: tests compare greedy
tokens with `model.generate(do_sample=False)` and the recorded log-probs with a teacher-forced forward.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from .types import FinishReason, Prompt, Rollout

if TYPE_CHECKING:
    from .config import SamplingConfig

# Decoder classes the fast path reads (same module names and numerics as LlamaForCausalLM).
FAST_PATH_CLASSES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
# Rotary variants whose frequencies are a fixed buffer (no sequence-length-dependent rescaling).
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
# Compact the batch once this fraction of the active rows has finished.
COMPACT_FRACTION = 1 / 8


@dataclass(frozen=True)
class SampleOutput:
    """One completion: token ids (EOS included when it stopped on one), the sampler's log-prob of each,
    and why it ended."""

    completion_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason


# ----------------------------------------------------------------------------- per-step numerics

def sampling_logprobs(logits_BV: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                      vocab_size: int | None = None) -> torch.Tensor:
    """Log-probs (float32) of the distribution the sampler draws from: `log_softmax(logits / T)` over ids
    below `vocab_size`, truncated by top-k (keep the k largest, ties kept) and top-p (the transformers
    `TopPLogitsWarper` rule) only when set, renormalised. Excluded ids get -inf. The result has
    `min(V, vocab_size)` columns: ids at or past `vocab_size` are cut off, never sampled."""
    logits_BV = logits_BV.float()
    if vocab_size is not None:
        logits_BV = logits_BV[:, :vocab_size]
    if temperature != 1.0:
        logits_BV = logits_BV / temperature
    if 0 < top_k < logits_BV.shape[-1]:
        kth_B1 = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth_B1, float("-inf"))
    if top_p < 1.0:
        sorted_BV, order_BV = torch.sort(logits_BV, dim=-1, descending=False)
        cum_BV = sorted_BV.softmax(-1).cumsum(-1)
        drop_BV = cum_BV <= 1.0 - top_p
        drop_BV[:, -1] = False  # the most likely token always stays
        logits_BV = logits_BV.masked_fill(drop_BV.scatter(1, order_BV, drop_BV), float("-inf"))
    return logits_BV.log_softmax(-1)


def _draw(logits_BV: torch.Tensor, *, greedy: bool, temperature: float, top_k: int, top_p: float,
          vocab_size: int | None, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token ids (B,) and their log-probs (B,) under the distribution they were drawn from."""
    if greedy:
        logp_BV = sampling_logprobs(logits_BV, vocab_size=vocab_size)
        ids_B = logp_BV.argmax(-1)
    else:
        logp_BV = sampling_logprobs(logits_BV, temperature=temperature, top_k=top_k, top_p=top_p,
                                    vocab_size=vocab_size)
        ids_B = _multinomial(logp_BV.exp(), generator)
    return ids_B, logp_BV.gather(1, ids_B[:, None]).squeeze(1)


def _multinomial(probs_BV: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row. Runs keep their sampling generator on the CPU (its state is checkpointed), so on an
    accelerator the uniforms come from that CPU generator and the draw is an inverse-CDF lookup on the device:
    B random numbers cross the bus per token, not B × V probabilities. Zero-probability tokens are never drawn."""
    if generator is None or generator.device.type == probs_BV.device.type:
        return torch.multinomial(probs_BV, 1, generator=generator).squeeze(1)
    u_B = torch.rand(probs_BV.shape[0], generator=generator, dtype=torch.float64).to(probs_BV.device)
    return inverse_cdf_draw(probs_BV, u_B)


def inverse_cdf_draw(probs_BV: torch.Tensor, u_B: torch.Tensor) -> torch.Tensor:
    """The token i with cdf_{i-1} ≤ u·total < cdf_i, per row (u ∈ [0, 1))."""
    cdf_BV = probs_BV.double().cumsum(-1)
    ids_B1 = torch.searchsorted(cdf_BV, u_B.double()[:, None] * cdf_BV[:, -1:], right=True)
    return ids_B1.squeeze(1).clamp_max(probs_BV.shape[1] - 1)


# ----------------------------------------------------------------------------- public API

def sample(model, prompt_ids: Sequence[Sequence[int]], *, eos_token_id: int | Sequence[int], pad_token_id: int,
           max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
           horizon: int | None = None, stop_strings: Sequence[str] | None = None, tokenizer=None,
           vocab_size: int | None = None, generator: torch.Generator | None = None, batch_size: int = 256,
           greedy: bool = False, engine: str = "auto") -> list[SampleOutput]:
    """Sample one completion per prompt (see the module docstring for the exact semantics).

    `eos_token_id` may be a list (any of them stops; an empty list never stops on a token). `stop_strings`
    need `tokenizer`. `vocab_size` (usually `len(tokenizer)`) removes padded embedding rows from the
    distribution. `engine`: "auto" (fast path when the architecture allows), "fast" (error if it does not),
    or "hf" (the generic model call)."""
    _check_sample_args(prompt_ids, max_new_tokens, temperature, top_p, top_k, horizon, stop_strings, tokenizer,
                       vocab_size, batch_size, engine)
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    greedy = greedy or temperature == 0
    limit = max_new_tokens if horizon is None else min(horizon, max_new_tokens)
    cut_reason: FinishReason = "horizon" if horizon is not None and horizon < max_new_tokens else "length"
    if not prompt_ids:
        return []

    stepper_cls = _pick_stepper(model, engine, max(len(p) for p in prompt_ids) + limit)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            stepper = stepper_cls(model)
            order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
            outputs: list[SampleOutput | None] = [None] * len(prompt_ids)
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                results = _decode(
                    stepper, [list(prompt_ids[i]) for i in chunk], eos_ids=eos_ids, pad_token_id=pad_token_id,
                    limit=limit, cut_reason=cut_reason, greedy=greedy, temperature=temperature, top_k=top_k,
                    top_p=top_p, vocab_size=vocab_size, generator=generator,
                    stop_strings=list(stop_strings or []), tokenizer=tokenizer)
                for i, out in zip(chunk, results):
                    outputs[i] = out
    finally:
        model.train(was_training)
    return outputs  # type: ignore[return-value]


class HFSampler:
    """The `hf` sampler component: renders prompts, samples `n` completions each, returns `Rollout`s."""

    def __init__(self, model, tokenizer, cfg: SamplingConfig, *, engine: str = "auto"):
        if cfg.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be >= 1, got {cfg.max_new_tokens}")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token_id; the sampler needs one to stop rows")
        self.model, self.tokenizer, self.cfg, self.engine = model, tokenizer, cfg, engine

    def generate(self, prompts: Sequence[Prompt], n: int = 1, *, horizon: int | None = None, greedy: bool = False,
                 generator: torch.Generator | None = None, template: str = "{prompt}",
                 max_new_tokens: int | None = None) -> list[list[Rollout]]:
        """`n` rollouts per prompt, in prompt order. `horizon` (default `cfg.horizon`) cuts rollouts at that
        many tokens with finish reason "horizon"; `max_new_tokens` overrides the config's."""
        from .tasks.data import render_prompt

        if n < 1:
            raise ValueError(f"n (rollouts per prompt) must be >= 1, got {n}")
        tok, cfg = self.tokenizer, self.cfg
        horizon = cfg.horizon if horizon is None else horizon
        encoded = [tuple(tok(render_prompt(tok, p, template), add_special_tokens=False)["input_ids"])
                   for p in prompts]
        for p, ids in zip(prompts, encoded):
            if not ids:
                raise ValueError(f"prompt {p.id!r} renders to no tokens")
        outs = sample(
            self.model, [ids for ids in encoded for _ in range(n)], eos_token_id=_eos_ids(tok, self.model),
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            max_new_tokens=max_new_tokens or cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
            top_k=cfg.top_k, horizon=horizon, stop_strings=cfg.stop, tokenizer=tok, vocab_size=len(tok),
            generator=generator, batch_size=cfg.batch_size, greedy=greedy, engine=self.engine)
        rollouts = [
            Rollout(prompt_id=p.id, prompt_ids=ids, completion_ids=tuple(o.completion_ids),
                    logprobs=tuple(o.logprobs), finish_reason=o.finish_reason, horizon=horizon,
                    text=tok.decode(o.completion_ids, skip_special_tokens=True))
            for (p, ids), o in zip(((p, ids) for p, ids in zip(prompts, encoded) for _ in range(n)), outs)]
        return [rollouts[i * n:(i + 1) * n] for i in range(len(prompts))]


def _eos_ids(tokenizer, model) -> list[int]:
    """EOS ids: the tokenizer's, plus any the model's generation config lists (chat models often have two)."""
    ids = [tokenizer.eos_token_id]
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in [extra] if isinstance(extra, int) else (extra or []):
        if i not in ids:
            ids.append(i)
    return ids


def _check_sample_args(prompt_ids, max_new_tokens, temperature, top_p, top_k, horizon, stop_strings, tokenizer,
                       vocab_size, batch_size, engine) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
    if horizon is not None and horizon < 1:
        raise ValueError(f"horizon must be >= 1 or None, got {horizon}")
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to decode completions")
    if vocab_size is not None and vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if engine not in ("auto", "fast", "hf"):
        raise ValueError(f"engine {engine!r}: choose one of 'auto', 'fast', 'hf'")
    for i, ids in enumerate(prompt_ids):
        if len(ids) == 0:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")


# ----------------------------------------------------------------------------- the decode loop

def _decode(stepper, prompts: list[list[int]], *, eos_ids: list[int], pad_token_id: int, limit: int,
            cut_reason: FinishReason, greedy: bool, temperature: float, top_k: int, top_p: float,
            vocab_size: int | None, generator, stop_strings: list[str], tokenizer) -> list[SampleOutput]:
    """Prefill a left-padded block, then decode up to `limit` tokens, dropping finished rows as it goes."""
    device = stepper.device
    B, P = len(prompts), max(len(p) for p in prompts)
    input_ids_BP = torch.full((B, P), pad_token_id, dtype=torch.long)
    mask_BP = torch.zeros((B, P), dtype=torch.long)
    for b, p in enumerate(prompts):
        input_ids_BP[b, P - len(p):] = torch.tensor(p, dtype=torch.long)
        mask_BP[b, P - len(p):] = 1
    input_ids_BP, mask_BP = input_ids_BP.to(device), mask_BP.to(device)
    eos_E = torch.tensor(eos_ids, dtype=torch.long, device=device)

    tokens_BT = torch.zeros((B, limit), dtype=torch.long, device=device)
    logprobs_BT = torch.zeros((B, limit), dtype=torch.float32, device=device)
    lengths = [limit] * B
    reasons: list[FinishReason] = [cut_reason] * B
    rows = list(range(B))  # original row of each active row
    alive = [True] * B  # per active row: still decoding (finished rows wait for the next compaction)
    n_dead = 0

    rows_A = torch.arange(B, device=device)  # `rows` as a tensor, for scattering into the outputs
    logits_BV = stepper.prefill(input_ids_BP, mask_BP, max_len=P + limit)
    for t in range(limit):
        ids_B, lp_B = _draw(logits_BV, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                            vocab_size=vocab_size, generator=generator)
        tokens_BT[rows_A, t] = ids_B
        logprobs_BT[rows_A, t] = lp_B
        stopped = torch.isin(ids_B, eos_E).tolist() if eos_ids else [False] * len(rows)
        if stop_strings:
            for a, b in enumerate(rows):
                if alive[a] and not stopped[a]:
                    text = tokenizer.decode(tokens_BT[b, :t + 1].tolist(), skip_special_tokens=True)
                    stopped[a] = any(s in text for s in stop_strings)
        for a, b in enumerate(rows):
            if alive[a] and stopped[a]:
                alive[a], lengths[b], reasons[b] = False, t + 1, "stop"
                n_dead += 1
        if n_dead == len(rows) or t == limit - 1:
            break
        if n_dead and n_dead >= COMPACT_FRACTION * len(rows):
            keep = [a for a in range(len(rows)) if alive[a]]
            keep_K = torch.tensor(keep, device=device)
            stepper.select(keep_K)
            ids_B = ids_B[keep_K]
            rows, alive, n_dead = [rows[a] for a in keep], [True] * len(keep), 0
            rows_A = rows_A[keep_K]
        logits_BV = stepper.step(ids_B)

    tokens, logprobs = tokens_BT.tolist(), logprobs_BT.tolist()
    return [SampleOutput(tokens[b][:lengths[b]], logprobs[b][:lengths[b]], reasons[b]) for b in range(B)]


# ----------------------------------------------------------------------------- engines

def fast_path_supported(model, max_len: int | None = None) -> tuple[bool, str]:
    """Whether `_LlamaStepper` computes exactly this model's forward (for sequences up to `max_len`
    tokens); the reason when it does not."""
    name = type(model).__name__
    if name not in FAST_PATH_CLASSES:
        return False, f"{name} is not one of {FAST_PATH_CLASSES} (wrapped models, e.g. by peft, use the generic engine)"
    cfg = model.config
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return False, f"hidden_act {cfg.hidden_act!r} (the fast path needs silu)"
    if getattr(cfg, "mlp_bias", False) or getattr(cfg, "pretraining_tp", 1) != 1:
        return False, "mlp_bias or pretraining_tp > 1"
    if getattr(model.lm_head, "bias", None) is not None:
        return False, "lm_head has a bias"
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") not in _STATIC_ROPE_TYPES:
        return False, f"rope_type {rope.get('rope_type')!r} rescales with sequence length"
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or []):
        return False, "sliding-window layers"
    window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None
    if window is not None and (max_len is None or max_len > window):
        return False, f"sliding-window attention ({window} tokens) shorter than the sequences"
    return True, ""


def _pick_stepper(model, engine: str, max_len: int):
    if engine == "hf":
        return _HFStepper
    ok, why = fast_path_supported(model, max_len)
    if engine == "fast" and not ok:
        raise ValueError(f"engine='fast' cannot run this model: {why}")
    return _LlamaStepper if ok else _HFStepper


class _HFStepper:
    """Generic engine: the model's own forward and cache, one call per step."""

    def __init__(self, model):
        self.model = model
        self.device = next(model.parameters()).device
        # transformers 5.2x renamed the cache argument `past_key_values` -> `cache` (old name deprecated).
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def prefill(self, input_ids_BP, mask_BP, max_len: int) -> torch.Tensor:
        self.mask_BL = mask_BP
        self.pos_B = mask_BP.sum(-1)  # position of the next token, counted from the first real one
        position_ids_BP = (mask_BP.cumsum(-1) - 1).clamp_min(0)
        out = self.model(input_ids=input_ids_BP, attention_mask=mask_BP, position_ids=position_ids_BP,
                         use_cache=True)
        self.cache = _returned_cache(out)
        return out.logits[:, -1]

    def step(self, ids_B) -> torch.Tensor:
        self.mask_BL = torch.cat([self.mask_BL, self.mask_BL.new_ones(len(ids_B), 1)], dim=1)
        out = self.model(input_ids=ids_B[:, None], attention_mask=self.mask_BL, position_ids=self.pos_B[:, None],
                         use_cache=True, **{self.cache_arg: self.cache})
        self.pos_B = self.pos_B + 1
        self.cache = _returned_cache(out)
        return out.logits[:, -1]

    def select(self, keep_K) -> None:
        self.cache.batch_select_indices(keep_K)
        self.mask_BL, self.pos_B = self.mask_BL[keep_K], self.pos_B[keep_K]


def _returned_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _interleave_rows(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Permute each head's output rows from the rotate-half layout (x1..x_{d/2}, y1..y_{d/2}) to interleaved
    pairs (x1, y1, x2, y2, ...), so RoPE becomes a complex multiply on adjacent pairs."""
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


class _LlamaStepper:
    """Fast path for Llama-layout decoders: fused weights, complex-multiply RoPE, preallocated KV cache."""

    def __init__(self, model):
        cfg, base = model.config, model.model
        self.device = next(model.parameters()).device
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.hidden = cfg.hidden_size
        self.eps = cfg.rms_norm_eps
        H, K, d = self.n_heads, self.n_kv, self.head_dim
        scale = d ** -0.5
        self.layers = []
        for layer in base.layers:
            attn, mlp = layer.self_attn, layer.mlp
            wq, wk = _interleave_rows(attn.q_proj.weight, H, d), _interleave_rows(attn.k_proj.weight, K, d)
            bq = _interleave_rows(attn.q_proj.bias, H, d) if attn.q_proj.bias is not None else None
            bk = _interleave_rows(attn.k_proj.bias, K, d) if attn.k_proj.bias is not None else None
            q_norm = getattr(attn, "q_norm", None)  # Qwen3: RMSNorm over head_dim before RoPE
            k_norm = getattr(attn, "k_norm", None)
            if q_norm is not None:  # the scale goes after the norm, into its weight
                qn = _interleave_rows(q_norm.weight, 1, d) * scale
                kn = _interleave_rows(k_norm.weight, 1, d)
            else:
                qn = kn = None
                wq = wq * scale
                bq = bq * scale if bq is not None else None
            w_qkv = torch.cat([wq, wk, attn.v_proj.weight]).contiguous()
            b_qkv = torch.cat([bq, bk, attn.v_proj.bias]) if bq is not None else None
            w_gu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).contiguous()
            self.layers.append((layer.input_layernorm.weight, w_qkv, b_qkv, qn, kn, attn.o_proj.weight,
                                attn.o_proj.bias, layer.post_attention_layernorm.weight, w_gu, mlp.down_proj.weight))
        self.embed = base.embed_tokens.weight
        self.norm = base.norm.weight
        self.lm_head = model.lm_head.weight
        self.inv_freq = base.rotary_emb.inv_freq.float()
        self.rope_scale = float(getattr(base.rotary_emb, "attention_scaling", 1.0))
        self.dtype = self.embed.dtype

    def _rope_table(self, max_len: int) -> torch.Tensor:
        """cos + i sin of position * inv_freq, times the rotary attention scaling: (max_len, d/2) complex."""
        angles = torch.arange(max_len, device=self.device, dtype=torch.float32)[:, None] * self.inv_freq[None]
        return torch.polar(torch.full_like(angles, self.rope_scale), angles)

    def _rotate(self, x_BSHd: torch.Tensor, cis_BS1c: torch.Tensor) -> torch.Tensor:
        shape = x_BSHd.shape
        x_c = torch.view_as_complex(x_BSHd.float().reshape(*shape[:-1], -1, 2))
        return torch.view_as_real(x_c * cis_BS1c).reshape(shape).to(self.dtype)

    def _forward(self, x_BSD: torch.Tensor, cis_BS1c: torch.Tensor, bias_BQL: torch.Tensor, lo: int,
                 hi: int) -> torch.Tensor:
        """Run all layers on S new tokens at cache columns [hi - S, hi); attend over columns [lo, hi)."""
        B, S, _ = x_BSD.shape
        H, K, d = self.n_heads, self.n_kv, self.head_dim
        G = H // K
        for i, (w_in, w_qkv, b_qkv, qn, kn, w_o, b_o, w_post, w_gu, w_down) in enumerate(self.layers):
            h = F.rms_norm(x_BSD, (self.hidden,), w_in, self.eps)
            qkv = F.linear(h, w_qkv, b_qkv)
            q = qkv[..., :H * d].view(B, S, H, d)
            k = qkv[..., H * d:(H + K) * d].view(B, S, K, d)
            v = qkv[..., (H + K) * d:].view(B, S, K, d)
            if qn is not None:
                q, k = F.rms_norm(q, (d,), qn, self.eps), F.rms_norm(k, (d,), kn, self.eps)
            q, k = self._rotate(q, cis_BS1c), self._rotate(k, cis_BS1c)
            k_cache, v_cache = self.k_cache[i], self.v_cache[i]
            k_cache[:, :, hi - S:hi] = k.transpose(1, 2)
            v_cache[:, :, hi - S:hi] = v.transpose(1, 2)
            # queries grouped by their kv head: (B, K, G*S, d) against keys (B, K, L, d)
            q = q.view(B, S, K, G, d).permute(0, 2, 3, 1, 4).reshape(B, K, G * S, d)
            scores = torch.matmul(q, k_cache[:, :, lo:hi].transpose(-1, -2))  # scale folded into q
            scores = scores.view(B, K, G, S, hi - lo).add_(bias_BQL[:, None, None]).softmax(-1)
            o = torch.matmul(scores.view(B, K, G * S, hi - lo), v_cache[:, :, lo:hi])
            o = o.view(B, K, G, S, d).permute(0, 3, 1, 2, 4).reshape(B, S, H * d)
            x_BSD = x_BSD + F.linear(o, w_o, b_o)
            h = F.rms_norm(x_BSD, (self.hidden,), w_post, self.eps)
            gate, up = F.linear(h, w_gu).chunk(2, dim=-1)
            x_BSD = x_BSD + F.linear(F.silu(gate) * up, w_down)
        return F.linear(F.rms_norm(x_BSD[:, -1], (self.hidden,), self.norm, self.eps), self.lm_head)

    def prefill(self, input_ids_BP, mask_BP, max_len: int) -> torch.Tensor:
        B, P = input_ids_BP.shape
        shape = (B, self.n_kv, max_len, self.head_dim)
        self.k_cache = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.v_cache = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self.cis = self._rope_table(max_len)
        real_BP = mask_BP.bool()
        # Additive key bias for every cache column; columns written later by decoding are real tokens.
        self.key_bias_BL = torch.zeros((B, max_len), dtype=self.dtype, device=self.device)
        self.key_bias_BL[:, :P].masked_fill_(~real_BP, float("-inf"))
        self.lo = int((~real_BP).sum(-1).min())  # columns before every row's first real token are skipped
        self.hi = P
        self.pos_B = real_BP.sum(-1)
        pos_BP = (real_BP.long().cumsum(-1) - 1).clamp_min(0)
        causal_PP = torch.ones((P, P), dtype=torch.bool, device=self.device).tril()
        allowed_BPP = (causal_PP[None] & real_BP[:, None, :]) | torch.eye(P, dtype=torch.bool, device=self.device)
        bias_BPP = torch.zeros((B, P, P), dtype=self.dtype, device=self.device).masked_fill_(~allowed_BPP,
                                                                                              float("-inf"))
        x = F.embedding(input_ids_BP, self.embed)
        return self._forward(x, self.cis[pos_BP][:, :, None], bias_BPP[:, :, self.lo:], self.lo, P)

    def step(self, ids_B) -> torch.Tensor:
        self.hi += 1
        x = F.embedding(ids_B, self.embed)[:, None]
        cis = self.cis[self.pos_B][:, None, None]
        self.pos_B = self.pos_B + 1
        return self._forward(x, cis, self.key_bias_BL[:, None, self.lo:self.hi], self.lo, self.hi)

    def select(self, keep_K) -> None:
        self.k_cache = [c[keep_K] for c in self.k_cache]
        self.v_cache = [c[keep_K] for c in self.v_cache]
        self.key_bias_BL, self.pos_B = self.key_bias_BL[keep_K], self.pos_B[keep_K]
        real_BL = self.key_bias_BL[:, :self.hi] == 0
        self.lo = int(real_BL.float().argmax(-1).min())  # earliest real column among the kept rows
