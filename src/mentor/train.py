"""The one training loop: set-up, steps, evaluation, metrics, checkpoints, resume, report.

What a step does depends on the recipe's `algo`: `sft` trains on traces (`sft.py`); the RL and distillation
objectives run PromptSource → Selector → Sampler → Scorers → Objective → Learner (`rl.py`). Both are
"steppers" with the same small surface — `step(step) -> metrics`, `state_dict()`, `load_state_dict()` — so
this file owns everything a run needs around them exactly once: the run directory, the optimizer and schedule,
the micro-batched backward with an explicit normaliser, evaluation, logging, atomic checkpoints and
bit-for-bit resume.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from . import runs
from .config import ConfigError, OptimConfig, TrainConfig, dump_yaml
from .types import Prompt, TrainBatch


# ----------------------------------------------------------------------------- set-up

def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(device)


def load_policy(cfg: TrainConfig, device: torch.device, resume_from: Path | None = None):
    """Tokenizer and trainable model (optionally with LoRA adapters and gradient checkpointing). On resume the
    weights come from the checkpoint: the whole model, or with LoRA the base model plus the saved adapter."""
    from .models import load_model, load_tokenizer

    lora = cfg.model.lora.enabled
    path = str(resume_from) if resume_from is not None and not lora else cfg.model.path
    tokenizer = load_tokenizer(cfg.model.tokenizer or path)
    model = load_model(path, dtype=cfg.model.dtype, device=str(device), seed=cfg.run.seed, tokenizer=tokenizer)
    if cfg.model.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # transformers >= 5 renamed gradient checkpointing to activation checkpointing
        model.config.use_cache = False
    if lora:
        try:
            from peft import LoraConfig, PeftModel, get_peft_model
        except ImportError:
            raise ConfigError("model.lora.enabled: needs the `peft` extra (pip install 'mentor[peft]')") from None
        if resume_from is not None:
            model = PeftModel.from_pretrained(model, str(resume_from), is_trainable=True)
        else:
            lc = cfg.model.lora
            model = get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                     target_modules=list(lc.target_modules), task_type="CAUSAL_LM"))
    return model, tokenizer


def autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast where the hardware has it (CUDA with bf16 support): `model.autocast=auto|bf16|off`."""
    import contextlib

    mode = cfg.model.autocast
    if mode == "off" or (mode == "auto" and not (device.type == "cuda" and torch.cuda.is_bf16_supported())):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(model, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW; its fused kernel (one pass over all parameters, CPU or CUDA) when every parameter allows it."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                             fused=fused or None)


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base lr at `step`: linear warmup, then constant / linear / cosine to `min_lr_ratio`."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    decay = 1.0 - progress if cfg.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay


def make_scheduler(optimizer, cfg: OptimConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))


# ----------------------------------------------------------------------------- the learner step

def backward_step(model, optimizer, scheduler, batches: Iterable[TrainBatch], loss_fn: Callable, normaliser: float,
                  grad_clip: float) -> dict[str, float]:
    """One optimizer step over micro-batches: each contributes loss_fn(model, mb, normaliser) (already divided
    by the batch-wide normaliser); gradients are summed, never averaged over the accumulation count.
    Metrics a loss function reports are averaged over micro-batches, weighted by their `_weight` (loss tokens),
    except those under `_summed` (shares of a batch-wide quantity, like the loss itself), which are summed."""
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    summed: dict[str, float] = {}
    weight = 0.0
    loss_sum = 0.0
    for mb in batches:
        loss, metrics = loss_fn(model, mb, normaliser)
        loss.backward()
        loss_sum += loss.item()
        w = float(metrics.pop("_weight", mb.num_loss_tokens))
        weight += w
        for k, v in metrics.pop("_summed", {}).items():
            summed[k] = summed.get(k, 0.0) + float(v)
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + w * float(v)
    out = {k: v / weight for k, v in sums.items()} if weight else {}
    out.update(summed)
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if not torch.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)  # skip the update: a non-finite gradient would corrupt the weights
        out["skipped_nonfinite_grad"] = 1.0
    else:
        optimizer.step()
    lr = optimizer.param_groups[0]["lr"]
    scheduler.step()
    return {"loss": loss_sum, "grad_norm": float(grad_norm), "lr": lr, **out}


# ----------------------------------------------------------------------------- steppers

class SFTStepper:
    """Supervised fine-tuning on traces (`sft.py`)."""

    def __init__(self, cfg: TrainConfig, model, tokenizer, optimizer, scheduler, train_prompts: list[Prompt], device):
        from . import sft

        self.cfg, self.model, self.tokenizer, self.device = cfg, model, tokenizer, device
        self.optimizer, self.scheduler = optimizer, scheduler
        self.examples, self.dropped = sft.build_examples(train_prompts, tokenizer, cfg.data.prompt_template, cfg.sft.max_length)
        if not self.examples:
            raise ValueError(f"SFT: no training example fits sft.max_length={cfg.sft.max_length}")
        self.cursor = sft.DataCursor()

    def step(self, step: int) -> dict[str, Any]:
        from . import sft

        o = self.cfg.optim
        idx = self.cursor.next_batch(len(self.examples), o.batch_size, self.cfg.run.seed)
        batch = [self.examples[i] for i in idx]
        mbs = [mb.to(self.device) for mb in sft.micro_batches(batch, o.micro_batch_size, self.tokenizer.pad_token_id,
                                                              self.cfg.sft.bucket)]
        n_tok = sum(mb.num_loss_tokens for mb in mbs)
        self.model.train()
        m = backward_step(self.model, self.optimizer, self.scheduler, mbs, sft.sft_loss, n_tok, o.grad_clip)
        n_all = sum(int(mb.attention_mask.sum()) for mb in mbs)
        return {**m, "loss_tokens": n_tok, "tokens": n_all, "epoch": self.cursor.epoch}

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": (self.cursor.epoch, self.cursor.index)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor.epoch, self.cursor.index = state["cursor"]


def make_stepper(cfg: TrainConfig, model, tokenizer, optimizer, scheduler, train_prompts, device):
    if cfg.algo == "sft":
        return SFTStepper(cfg, model, tokenizer, optimizer, scheduler, train_prompts, device)
    try:
        from .rl import make_rl_stepper
    except ImportError:
        raise ConfigError(f"algo: {cfg.algo!r} is not available (allowed: 'sft')") from None
    return make_rl_stepper(cfg, model, tokenizer, optimizer, scheduler, train_prompts, device)


# ----------------------------------------------------------------------------- data

def load_prompts(cfg: TrainConfig) -> tuple[list[Prompt], list[Prompt]]:
    """Training and held-out prompts: a procedural task (disjoint splits), or dataset rows (the eval split is
    the `eval` split when one exists, else the last `num_eval` rows, never trained on)."""
    d = cfg.data
    if d.tasks:  # a mixture: equal shares per task, interleaved so every batch mixes domains
        from .tasks import make_prompts

        def mix(n: int, split: str) -> list[Prompt]:
            per = [make_prompts(name, -(-n // len(d.tasks)), cfg.run.seed, split, **args) for name, args in d.tasks.items()]
            return [ps[i] for i in range(max(map(len, per))) for ps in per if i < len(ps)][:n]

        return mix(d.num_train, "train"), mix(d.num_eval, "eval")
    if d.task:
        from .tasks import make_prompts

        train = make_prompts(d.task, d.num_train, cfg.run.seed, "train", **d.task_args)
        held = make_prompts(d.task, d.num_eval, cfg.run.seed, "eval", **d.task_args)
        return train, held
    if not d.path:
        raise ConfigError("data: give either data.task (a procedural task) or data.path (a dataset)")
    from .tasks.data import load_rows

    rows = load_rows(d.path, split=d.split, fields=d.fields, verifier=d.verifier, answer_extract=d.answer_extract)
    n_eval = min(d.num_eval, len(rows) // 5)
    return rows[: len(rows) - n_eval], rows[len(rows) - n_eval:]


# ----------------------------------------------------------------------------- logging

@dataclass
class Logger:
    run_dir: Path
    tensorboard: bool = False
    wandb_project: str | None = None
    _tb: Any = None
    _wandb: Any = None
    metrics: runs.JsonlLog = field(init=False)
    samples: runs.JsonlLog = field(init=False)

    def __post_init__(self):
        self.metrics = runs.JsonlLog(self.run_dir / "metrics.jsonl")
        self.samples = runs.JsonlLog(self.run_dir / "samples.jsonl")
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("run.tensorboard: needs the `track` extra (pip install 'mentor[track]')") from None
            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        if self.wandb_project:
            try:
                import wandb
            except ImportError:
                raise ConfigError("run.wandb_project: needs the `track` extra (pip install 'mentor[track]')") from None
            self._wandb = wandb.init(project=self.wandb_project, dir=str(self.run_dir), resume="allow")

    def log(self, step: int, record: dict[str, Any]) -> None:
        self.metrics.write({"step": step, **record})
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


# ----------------------------------------------------------------------------- the loop

def run_eval(cfg: TrainConfig, model, tokenizer, prompts: list[Prompt], step: int) -> dict[str, Any]:
    from .evaluate import evaluate

    e = cfg.eval
    res = evaluate(model, tokenizer, prompts[: e.size], k=e.k, greedy=e.greedy, temperature=e.temperature,
                   max_new_tokens=e.max_new_tokens or cfg.sampling.max_new_tokens, template=cfg.data.prompt_template,
                   batch_size=cfg.sampling.batch_size, seed=cfg.run.seed + 7919 * step)
    return {f"eval/{k}": v for k, v in res.summary.items() if isinstance(v, (int, float))}, res


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) a training recipe; returns the run directory."""
    run_dir = Path(cfg.run.out_dir)
    existing = runs.latest_checkpoint(run_dir)
    if resume and existing is None:
        raise FileNotFoundError(f"--resume {run_dir}: no complete checkpoint under {run_dir / 'ckpt'}")
    if not resume and existing is not None:
        raise FileExistsError(f"run directory {run_dir} already has checkpoints: use `mentor train --resume {run_dir}` or another run.out_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        for name in runs.remove_partial_checkpoints(run_dir):
            print(f"[resume] removed the unfinished checkpoint write {name}")
    runs.atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    runs.seed_everything(cfg.run.seed)

    model, tokenizer = load_policy(cfg, device, resume_from=existing / "model" if resume else None)
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim, cfg.run.steps)
    train_prompts, eval_prompts = load_prompts(cfg)
    stepper = make_stepper(cfg, model, tokenizer, optimizer, scheduler, train_prompts, device)
    from .controllers import ControllerContext, build_controllers

    ctx = ControllerContext(model, optimizer, stepper, tokenizer, train_prompts, eval_prompts, run_dir, device)
    controllers = build_controllers(cfg, ctx)
    logger = Logger(run_dir, cfg.run.tensorboard, cfg.run.wandb_project)

    start = 0
    if resume:
        state = runs.load_trainer_state(existing)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stepper.load_state_dict(state["stepper"])
        for name, c in controllers:
            c.load_state_dict(state["controllers"][name])
        runs.set_rng_state(state["rng"])
        start = state["step"]
        logger.metrics.truncate_to_step(start)
        logger.samples.truncate_to_step(start)

    def checkpoint(step: int) -> None:
        runs.save_checkpoint(run_dir, step, model, tokenizer, {
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "stepper": stepper.state_dict(), "controllers": {n: c.state_dict() for n, c in controllers}},
            keep=cfg.run.keep_checkpoints)

    from .progress import TrainProgress

    with TrainProgress(cfg.run.steps, start=start, enabled=cfg.run.progress, title=f"{cfg.algo} → {run_dir}") as bar:
        if start == 0 and cfg.eval.every > 0:
            ev, _ = run_eval(cfg, model, tokenizer, eval_prompts, 0)
            logger.log(0, ev)
            bar.update(0, ev)
        for step in range(start + 1, cfg.run.steps + 1):
            t0 = time.perf_counter()
            before = {}
            for _, c in controllers:
                before.update(c.before_step(step, ctx))
            with autocast(cfg, device):
                record = stepper.step(step)
            record.update(before)
            for _, c in controllers:
                record.update(c.after_step(step, ctx, record))
            if hasattr(stepper, "cost"):  # cumulative tokens and FLOPs by role, controllers' work included
                record.update(stepper.cost.metrics())
            record["time/step"] = time.perf_counter() - t0
            if "tokens" in record:
                record["tokens_per_s"] = record["tokens"] / record["time/step"]
            samples = record.pop("_samples", None)
            if (cfg.eval.every > 0 and step % cfg.eval.every == 0) or step == cfg.run.steps:  # every=0: at the end
                ev, res = run_eval(cfg, model, tokenizer, eval_prompts, step)
                record.update(ev)
                samples = samples or res.items[: cfg.run.samples_per_step]
            if step % cfg.run.log_every == 0 or step == cfg.run.steps:
                logger.log(step, record)
            if samples:
                for s in samples[: cfg.run.samples_per_step]:
                    logger.samples.write({"step": step, **s})
            bar.update(step, record)
            if (cfg.run.save_every and step % cfg.run.save_every == 0) or step == cfg.run.steps:
                checkpoint(step)
    logger.close()

    from .models import save_model
    from .report import write_report

    if cfg.model.lora.enabled:  # the adapter alone, and the merged weights as a normal HF model
        save_model(model, tokenizer, run_dir / "final_adapter")
        model = model.merge_and_unload()
    save_model(model, tokenizer, run_dir / "final")
    write_report(run_dir)
    return run_dir
