"""The plain data that flows between mentor's components (DESIGN.md §2).

Every arrow of the training step carries one of these: frozen dataclasses or tensors, never a trainer
object, so that samplers, scorers and learners can later run as separate processes or Ray actors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

FinishReason = Literal["stop", "length", "horizon"]


@dataclass(frozen=True)
class Prompt:
    """One problem. `text` is a plain prompt; `messages` a chat (then the tokenizer's chat template
    renders it). `answer` is what the verifier compares against (string; for code tasks the tests).
    Provenance (`source`, `domain`, `difficulty`, `mode`, `row`) rides through to the logs."""

    id: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    answer: str | None = None
    verifier: str = "exact"
    source: str = ""
    domain: str = ""
    difficulty: int | None = None
    mode: str | None = None
    row: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if (self.text is None) == (self.messages is None):
            raise ValueError(f"Prompt {self.id!r}: give exactly one of `text` or `messages`")


@dataclass(frozen=True)
class Rollout:
    """One sampled completion. `logprobs` are the sampler's per-token log-probs of the tokens it
    emitted, under exactly the distribution it sampled from (temperature-scaled, no top-k unless set)."""

    prompt_id: str
    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    horizon: int | None = None
    text: str = ""

    @property
    def length(self) -> int:
        return len(self.completion_ids)


@dataclass(frozen=True)
class Scored:
    """A rollout plus what scorers added."""

    rollout: Rollout
    reward: float
    parts: dict[str, float] = field(default_factory=dict)
    correct: bool | None = None
    teacher_logprobs: tuple[float, ...] | None = None
    ref_logprobs: tuple[float, ...] | None = None


@dataclass
class TrainBatch:
    """Padded tensors for the learner. `loss_mask` keeps completion tokens that carry loss; all
    per-token tensors are aligned with `input_ids` shifted by one (position t predicts token t+1)."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    loss_mask: torch.Tensor  # (B, T-1) float
    old_logprobs: torch.Tensor | None = None  # (B, T-1)
    advantages: torch.Tensor | None = None  # (B, T-1) or (B,)
    num_loss_tokens: int = 0
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device) -> "TrainBatch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TrainBatch(move(self.input_ids), move(self.attention_mask), move(self.loss_mask),
                          move(self.old_logprobs), move(self.advantages), self.num_loss_tokens,
                          {k: move(v) for k, v in self.extras.items()})
