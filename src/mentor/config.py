"""Typed configs: one dataclass per component, YAML recipes, `key.sub=value` overrides, clear errors.

A recipe is a YAML mapping whose top-level keys are the fields of `TrainConfig` (sections below).
`load_config(path, overrides)` parses it, applies overrides, and validates every key and value against the
dataclasses: an unknown key, a wrong type or a value outside the allowed set fails at load time with the
key path (e.g. ``optim.lr``), what was given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A malformed recipe or override; the message names the key path and what is allowed."""


# ----------------------------------------------------------------------------- sections

@dataclass
class RunConfig:
    out_dir: str = "runs/default"  # run directory (config, metrics.jsonl, samples.jsonl, ckpt/, final/)
    seed: int = 0  # seeds python, numpy, torch and the data order
    steps: int = 100  # optimizer steps (SFT) or training steps (RL: one rollout batch each)
    log_every: int = 1  # write metrics every N steps
    save_every: int = 50  # checkpoint every N steps (0: only at the end)
    keep_checkpoints: int = 2  # keep the newest N checkpoints
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", or "auto"
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    progress: bool = True  # rich progress bar with live metrics
    tensorboard: bool = False  # also log to run_dir/tb (needs the `track` extra)
    wandb_project: str | None = None  # also log to Weights & Biases (needs the `track` extra)
    samples_per_step: int = 2  # decoded samples written to samples.jsonl per logged step


@dataclass
class LoraConfig:
    enabled: bool = False  # train LoRA adapters through peft instead of all weights
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    path: str = "tiny:1m"  # hub id, local HF directory, or tiny:PRESET (100k, 1m, 6m) built locally
    tokenizer: str | None = None  # defaults to `path`
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # fp32 on CPU (bf16 is 4-16x slower there)
    gradient_checkpointing: bool = False
    autocast: Literal["auto", "bf16", "off"] = "auto"  # bf16 autocast in sampling and learning: auto = CUDA with bf16 only
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class FieldMap:
    """Which columns of a dataset row hold what (rows are JSONL / Parquet / HF datasets)."""

    prompt: str = "prompt"  # plain-text prompt column
    messages: str = "messages"  # chat-messages column (used when `prompt` is absent)
    answer: str = "answer"
    verifier: str = "verifier"  # per-row verifier name (optional column)
    source: str = "source"
    domain: str = "domain"
    id: str = "id"
    completion: str = "completion"  # SFT target column


@dataclass
class DataConfig:
    task: str | None = "add"  # procedural task family (see `mentor.tasks.TASKS`); or null to use `path`
    task_args: dict[str, Any] = field(default_factory=dict)  # e.g. {digits: 3}
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # multi-task mixture: task -> its args (replaces `task`)
    path: str | None = None  # JSONL / Parquet file, local dataset dir, or hub id (with `split`)
    split: str = "train"
    fields: FieldMap = field(default_factory=FieldMap)
    verifier: str = "exact"  # default verifier when rows do not name one: exact | math | task | code
    answer_extract: Literal["auto", "gsm8k", "boxed", "none"] = "auto"  # auto: after "####", else the last \\boxed{}
    prompt_template: str = "{prompt}"  # how a plain prompt is wrapped for the model
    num_train: int = 20000  # procedural tasks: prompts generated for training
    num_eval: int = 256  # held-out prompts for evaluation (disjoint from training)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # final lr = lr * min_lr_ratio for linear/cosine
    grad_clip: float = 1.0  # max global grad norm (0: off)
    batch_size: int = 64  # sequences per optimizer step (SFT) or prompts per step (RL)
    micro_batch_size: int = 64  # sequences per forward/backward; accumulation uses an explicit normaliser
    # RL learner: micro-batches are planned by length (rl.length_buckets); one more forward/backward is worth
    # this many padded tokens (measured on a 2-core CPU with the 1m model; 0: cut wherever padding drops)
    micro_batch_overhead_tokens: int = 128


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # stop strings (EOS always stops)
    horizon: int | None = None  # cut rollouts at H tokens (finish reason "horizon")
    batch_size: int = 256  # sequences decoded together


@dataclass
class SFTConfig:
    bucket: bool = True  # group examples of similar length into a micro-batch
    max_length: int = 512  # drop (with a count in the log) examples longer than this


@dataclass
class RLConfig:
    """RLVR and distillation settings (specs/grpo_family.md §2.6, lpo.md, selection.md). Fields left `None` take
    the objective's paper default from `mentor.objectives.OBJECTIVES`."""

    group_size: int | None = None  # G completions per prompt (default: 8 for RL objectives, 1 for opd / g_opd)
    clip_eps_low: float | None = None  # PPO clip below 1 (default 0.2)
    clip_eps_high: float | None = None  # PPO clip above 1 (default 0.2; dapo 0.28)
    dual_clip_c: float | None = None  # dual-clip constant c > 1 for A < 0 (default: off; 3.0 for opd / g_opd)
    tis_cap: float = 5.0  # token truncated-IS cap on exp(l_old - l_samp)
    recompute_old_logprobs: bool = True  # learner recomputes l_old (else l_old := sampler log-probs, w = 1)
    kl_coef: float = 0.0  # beta of the KL-to-reference loss (0: no reference model is loaded)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    reference: str | None = None  # reference model path (default: the initial policy)
    entropy_coef: float = 0.0  # entropy bonus coefficient
    aggregation: Literal["seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm", "token_mean"] | None = None
    std_ddof: int = 1  # group std estimator (1: Bessel)
    adv_eps: float = 1e-6
    reinforce_baseline: Literal["batch", "group"] = "batch"  # reinforce_pp: batch statistics only, or group baseline first
    ppo_epochs: int = 1  # optimisation epochs over each rollout batch
    minibatches: int = 1  # optimizer steps per epoch
    overlong_shaping: bool | None = None  # DAPO soft overlong penalty (default on for dapo)
    overlong_cache: int | None = None  # L_cache (default max_new_tokens // 5)
    overlong_filter: bool = False  # truncated samples get loss mask 0
    lpo_tau: str | float = "std"  # LPO temperature rule: std | one | mean | a float
    lpo_identical_groups: Literal["mask", "project"] = "mask"
    selector: str | None = None  # uniform | dynamic | ... (`mentor.selection.SELECTORS`); default: dynamic for dapo, else uniform
    selector_args: dict[str, Any] = field(default_factory=dict)  # the selector's own settings (its dataclass's fields)
    dynamic_max_rounds: int = 4  # dynamic sampling: sampling rounds per step at most
    dynamic_oversample: float = 2.0  # dynamic sampling: prompts drawn per round = oversample x batch
    dynamic_on_exhaust: Literal["train_partial", "error"] = "train_partial"
    success_threshold: float = 1.0  # reward >= this counts as correct (pass rates, accuracy)
    transform: str | None = None  # prompt transform between selector and sampler (`mentor.rl.TRANSFORMS`), e.g. composition
    transform_args: dict[str, Any] = field(default_factory=dict)  # the transform's own settings (its dataclass's fields)


@dataclass
class TeacherConfig:
    model: str  # hub id, local HF directory (or tiny:PRESET in tests)
    reward_scale: float | None = None  # this teacher's lambda (default: distill.reward_scale)
    reference: str | None = None  # this teacher's G-OPD reference (default: distill.reference)


@dataclass
class DistillConfig:
    """On-policy distillation (specs/opd.md). `teacher` is the single-teacher shorthand; `teachers` maps names to
    teachers and `route_field` (a Prompt provenance field: domain, mode, source, or meta key) picks one per prompt."""

    teacher: str | None = None  # single teacher: model path
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)  # multi-teacher: name -> teacher
    route_field: str = "domain"  # which prompt field names its teacher (multi-teacher)
    reward_scale: float = 1.0  # G-OPD lambda: 1 = OPD, > 1 = ExOPD (1.25 in the paper's recipe)
    reference: str | None = "student_init"  # G-OPD reference when lambda != 1: student_init, a model path, or null
    estimator: Literal["sampled", "topk", "full"] = "sampled"
    discount: float = 0.0  # gamma of the discounted future sum of token rewards (sampled estimator)
    kl_penalty_coef: float = 1.0  # scale of the token advantages
    topk: int = 64  # teacher top-k (topk estimator)
    topk_tail: bool = True  # keep a tail bucket (else renormalise on the top-k)
    jsd_beta: float = 1.0  # full estimator: 0 forward KL, 1 reverse KL, in between generalized JSD


@dataclass
class EvalConfig:
    every: int = 50  # evaluate every N steps (0: only at the end)
    size: int = 256  # prompts from the held-out split
    greedy: bool = True
    k: int = 1  # samples per prompt when not greedy (pass@k, mean@k)
    temperature: float = 1.0
    max_new_tokens: int | None = None  # default: sampling.max_new_tokens


@dataclass
class TrainConfig:
    algo: str = "sft"  # sft, or an RL / distillation objective (see `mentor.objectives.OBJECTIVES`)
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    controllers: list[str] = field(default_factory=list)  # step controllers (see `mentor.controllers.CONTROLLERS`)
    controller_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # per controller: its own dataclass's fields


# ----------------------------------------------------------------------------- parsing

def from_dict(cls, data: Any, path: str = ""):
    """Build dataclass `cls` from a mapping, validating every key and value; errors name the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping for {cls.__name__}, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!r}; allowed keys here: {sorted(names)}")
    kwargs = {name: _coerce(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    return cls(**kwargs)


def _coerce(tp, value, path: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {_name(tp)}")
    if origin is Literal:
        if isinstance(value, bool) and ("off" if value is False else "on") in args:
            value = "off" if value is False else "on"  # YAML 1.1 reads a bare off / on as a boolean
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not allowed; choose one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        if args and args[1] is not Any:
            return {k: _coerce(args[1], v, f"{path}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `3e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {_name(tp)}")


def _name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def to_dict(cfg) -> dict[str, Any]:
    def conv(x):
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, list):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x
    return conv(dataclasses.asdict(cfg))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML: numbers, booleans, lists, null)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {p!r} is not a section")
        node[parts[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, cls=TrainConfig, base: dict | None = None):
    data = dict(base or {})
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    data = apply_overrides(data, list(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        where = f"recipe {path}: " if path else ""
        raise ConfigError(f"{where}{e}") from None


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
