"""Teacher and reference scorers for on-policy distillation (specs/opd.md §2.3, R5–R7).

A `TeacherScorer` prefills frozen models (teachers, G-OPD references) on the student's sampled token ids and
returns per-token log-probs of those tokens — no grad, eval mode, batched per model, temperature 1. It works on
plain tensors (`input_ids`, `attention_mask`), so it can run in-process now or behind a worker later.

Routing (multi-teacher): each prompt names its teacher through `route_field` (a `Prompt` field such as `domain`,
`mode` or `source`, or a key of `Prompt.meta`). Rows are grouped per teacher and each teacher scores its rows in
one batched forward pass; there is no per-sample loop.

Tokenizer identity (R6): every teacher and reference must map tokens to the same ids and share bos/eos/pad ids with
the student, otherwise loading fails naming both models and the first differing token.

λ ≠ 1 needs a reference (R4): `reference: student_init` (the student's starting weights, saved once in the run
directory so a resumed run uses the same ones), or a model path (reward correction: the teacher's pre-RL base).
A missing reference is a config error; mentor never silently falls back to λ = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import losses
from .config import ConfigError, DistillConfig
from .types import Prompt, TrainBatch


@dataclass
class Teacher:
    name: str
    model: Any
    reward_scale: float
    reference: str | None  # key into TeacherScorer.references, or None when λ = 1


def check_same_tokenizer(student_tok, other_tok, student_name: str, other_name: str) -> None:
    """Raise a clear error unless both tokenizers have identical token→id maps and special-token ids."""
    a, b = student_tok.get_vocab(), other_tok.get_vocab()
    if a != b:
        diff = sorted(set(a.items()) ^ set(b.items()), key=lambda kv: kv[1])
        tok, idx = diff[0]
        where = "student" if (tok, idx) in a.items() else other_name
        raise ConfigError(f"tokenizer mismatch between student {student_name!r} and {other_name!r}: token {tok!r} "
                          f"(id {idx}) appears only in {where}'s vocabulary; distillation needs identical tokenizers")
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(student_tok, attr) != getattr(other_tok, attr):
            raise ConfigError(f"tokenizer mismatch between student {student_name!r} and {other_name!r}: {attr} "
                              f"{getattr(student_tok, attr)} vs {getattr(other_tok, attr)}")


def route_value(prompt: Prompt, field: str) -> str:
    if hasattr(prompt, field) and field != "meta":
        return str(getattr(prompt, field))
    if field in prompt.meta:
        return str(prompt.meta[field])
    raise ValueError(f"prompt {prompt.id!r} (source {prompt.source!r}, row {prompt.row}): no routing field {field!r}")


class TeacherScorer:
    def __init__(self, cfg: DistillConfig, student_tokenizer, student_name: str, *, device, dtype: str = "float32",
                 run_dir: Path | None = None, student_model=None, seed: int = 0):
        from .models import load_model, load_tokenizer

        if cfg.teacher and cfg.teachers:
            raise ConfigError("distill: give either distill.teacher (one teacher) or distill.teachers (several), not both")
        if not cfg.teacher and not cfg.teachers:
            raise ConfigError("distill.teacher: on-policy distillation needs a teacher model (distill.teacher=PATH)")
        specs = cfg.teachers or {"teacher": _single(cfg)}
        self.cfg, self.device = cfg, device
        self.teachers: dict[str, Teacher] = {}
        self.references: dict[str, Any] = {}
        for name, spec in specs.items():
            lam = cfg.reward_scale if spec.reward_scale is None else spec.reward_scale
            ref = spec.reference if spec.reference is not None else cfg.reference
            if lam != 1.0 and ref in (None, "none", ""):
                raise ConfigError(f"distill.teachers.{name}: reward_scale {lam} != 1 needs a reference "
                                  "(distill.reference: student_init or a model path); mentor never falls back to OPD")
            check_same_tokenizer(student_tokenizer, load_tokenizer(spec.model), student_name, spec.model)
            model = load_model(spec.model, dtype=dtype, device=str(device), seed=seed).eval().requires_grad_(False)
            self.teachers[name] = Teacher(name, model, lam, ref if lam != 1.0 else None)
            if lam != 1.0 and ref not in self.references:
                self.references[ref] = self._load_reference(ref, student_tokenizer, student_name, student_model,
                                                            run_dir, device, dtype, seed)

    @staticmethod
    def _load_reference(ref: str, student_tok, student_name, student_model, run_dir, device, dtype, seed):
        from .models import load_model, load_tokenizer, save_model

        if ref == "student_init":
            if run_dir is None or student_model is None:
                raise ConfigError("distill.reference=student_init needs the student model and a run directory")
            path = Path(run_dir) / "reference_init"
            if not path.exists():  # saved once at the start; a resumed run reloads the same weights
                save_model(student_model, student_tok, path)
            ref = str(path)
        elif not ref.startswith("tiny:") and not Path(ref).exists() and "/" not in ref:
            raise ConfigError(f"distill.reference: {ref!r} is neither student_init nor an existing model path")
        check_same_tokenizer(student_tok, load_tokenizer(ref), student_name, ref)
        return load_model(ref, dtype=dtype, device=str(device), seed=seed).eval().requires_grad_(False)

    def route(self, prompts: list[Prompt]) -> list[str]:
        """Teacher name per prompt; a route value with no teacher fails naming the prompt and the value."""
        if len(self.teachers) == 1:
            return [next(iter(self.teachers))] * len(prompts)
        out = []
        for p in prompts:
            v = route_value(p, self.cfg.route_field)
            if v not in self.teachers:
                raise ValueError(f"prompt {p.id!r} (source {p.source!r}, row {p.row}): {self.cfg.route_field}={v!r} "
                                 f"has no teacher; teachers: {sorted(self.teachers)}")
            out.append(v)
        return out

    def check_routes(self, prompts: list[Prompt]) -> None:
        self.route(prompts)

    @torch.no_grad()
    def token_logprobs(self, model, batch: TrainBatch, rows: list[int], micro_batch_size: int) -> torch.Tensor:
        """Log-probs (temperature 1) of the sampled tokens under `model`, for `rows` of the batch."""
        out = torch.zeros((len(rows), batch.loss_mask.shape[1]), device=batch.loss_mask.device)
        for i in range(0, len(rows), micro_batch_size):
            ix = torch.tensor(rows[i : i + micro_batch_size], device=batch.input_ids.device)
            logits = model(input_ids=batch.input_ids[ix], attention_mask=batch.attention_mask[ix]).logits[:, :-1]
            out[i : i + len(ix)] = losses.gather_logprobs(logits, batch.input_ids[ix][:, 1:])
        return out

    def score(self, batch: TrainBatch, routes: list[str], micro_batch_size: int) -> dict[str, torch.Tensor]:
        """Teacher log-probs for every row (each row by its own teacher), the reference log-probs where the
        row's λ ≠ 1, and the per-row λ."""
        N = batch.input_ids.shape[0]
        teacher_lp = torch.zeros_like(batch.loss_mask)
        ref_lp = torch.zeros_like(batch.loss_mask)
        lam = torch.ones(N, device=batch.loss_mask.device)
        for name, t in self.teachers.items():
            rows = [i for i, r in enumerate(routes) if r == name]
            if not rows:
                continue
            teacher_lp[rows] = self.token_logprobs(t.model, batch, rows, micro_batch_size)
            lam[rows] = t.reward_scale
            if t.reference is not None:
                ref_lp[rows] = self.token_logprobs(self.references[t.reference], batch, rows, micro_batch_size)
        return {"teacher_logprobs": teacher_lp, "ref_logprobs": ref_lp, "reward_scale": lam}

    def describe(self) -> dict[str, Any]:
        return {name: {"reward_scale": t.reward_scale, "reference": t.reference} for name, t in self.teachers.items()}


def _single(cfg: DistillConfig):
    from .config import TeacherConfig

    return TeacherConfig(model=cfg.teacher)
