"""Supervised fine-tuning on traces: tokenisation, data order, length bucketing, the SFT loss.

The loss is the token-level negative log-likelihood of completion tokens (prompt tokens masked), summed over
every micro-batch and divided by one explicit normaliser: the number of loss tokens in the whole
optimizer-step batch. Gradient accumulation therefore never changes the gradient of a batch (STYLE.md §2).
Length bucketing sorts each batch by length before cutting it into micro-batches, so little compute is spent
on padding; the batch's contents (and so its gradient) do not depend on the bucketing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import losses
from .types import Prompt, TrainBatch


@dataclass(frozen=True)
class SFTExample:
    input_ids: tuple[int, ...]  # prompt + completion + EOS
    prompt_len: int


def build_examples(prompts: list[Prompt], tokenizer, template: str, max_length: int) -> tuple[list[SFTExample], int]:
    """Tokenise prompt and target completion (`meta["trace"]`, or `meta["completion"]` for dataset rows).
    Returns the examples and the number dropped for exceeding `max_length`."""
    from .tasks.data import render_prompt

    examples, dropped = [], 0
    for p in prompts:
        target = p.meta.get("trace", p.meta.get("completion"))
        if target is None:
            raise ValueError(f"SFT prompt {p.id!r} (source {p.source!r}) has no target completion (meta 'trace' or 'completion')")
        prompt_ids = tokenizer(render_prompt(tokenizer, p, template), add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = tuple(prompt_ids + completion_ids)
        if len(ids) > max_length:
            dropped += 1
            continue
        examples.append(SFTExample(ids, len(prompt_ids)))
    return examples, dropped


@dataclass
class DataCursor:
    """Where the data order stands: epoch and position in that epoch's permutation (checkpointed)."""

    epoch: int = 0
    index: int = 0

    def next_batch(self, n_examples: int, batch_size: int, seed: int) -> list[int]:
        out: list[int] = []
        while len(out) < batch_size:
            order = np.random.default_rng([seed, self.epoch]).permutation(n_examples)
            take = order[self.index : self.index + batch_size - len(out)]
            out.extend(int(i) for i in take)
            self.index += len(take)
            if self.index >= n_examples:
                self.epoch, self.index = self.epoch + 1, 0
        return out


def collate(examples: list[SFTExample], pad_id: int) -> TrainBatch:
    """Right-padded batch; `loss_mask[b, t] = 1` where token t+1 is a completion token."""
    T = max(len(e.input_ids) for e in examples)
    B = len(examples)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T - 1), dtype=torch.float32)
    for b, e in enumerate(examples):
        n = len(e.input_ids)
        input_ids[b, :n] = torch.tensor(e.input_ids)
        attention_mask[b, :n] = 1
        loss_mask[b, e.prompt_len - 1 : n - 1] = 1.0
    return TrainBatch(input_ids, attention_mask, loss_mask, num_loss_tokens=int(loss_mask.sum().item()))


def micro_batches(examples: list[SFTExample], micro_batch_size: int, pad_id: int, bucket: bool = True) -> list[TrainBatch]:
    if bucket:
        examples = sorted(examples, key=lambda e: len(e.input_ids))
    return [collate(examples[i : i + micro_batch_size], pad_id) for i in range(0, len(examples), micro_batch_size)]


def sft_loss(model, mb: TrainBatch, normaliser: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ over the micro-batch's loss tokens of −log p(token), divided by the batch-wide `normaliser`."""
    logits_BTV = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits[:, :-1]
    logprobs_BT = losses.gather_logprobs(logits_BTV, mb.input_ids[:, 1:])
    nll = -losses.masked_sum(logprobs_BT, mb.loss_mask)
    return nll / normaliser, {}
