"""Training and evaluation loop of `mentor control` (MR.Q/DR.Q's `main.py` protocol).

Per environment step: act (uniform random actions while the agent asks for them, else the policy plus Gaussian
exploration noise), store the transition, run one `agent.train()`. Evaluation every `eval_every` steps:
`eval_episodes` episodes with the deterministic policy on a separate environment seeded `seed + 100` (created once,
its RNG continuing across evaluations, as in MR.Q).

Run directory::

    config.json      resolved `TrainConfig` and hyperparameters
    metrics.jsonl    one line per evaluation (returns, losses, speed) and per training episode
    evals.csv        step, mean return, then each evaluation episode's return
    curve.png        evaluation curve (rewritten at every evaluation)
    ckpt/step_N/     trainer.pt: agent (networks, optimisers, replay), RNG states, environment RNGs, loop counters

Checkpoints are written atomically at the first episode boundary after every `checkpoint_every` steps, so resuming
(`resume=True`) continues the same data stream: with the same torch build and thread count a resumed run
reproduces the uninterrupted one. The final checkpoint may fall mid-episode; a run extended from it closes that
episode as truncated and starts a new one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runs import JsonlLog, atomic_dir, atomic_write_text, latest_checkpoint, list_checkpoints, read_jsonl, rng_state, seed_everything, set_rng_state
from .agent import PRESETS, Agent, make_hyperparameters
from .envs import ControlEnv, make_env
from .td3 import TD3, make_td3_hyperparameters

ALGOS = tuple(PRESETS) + ("td3",)


@dataclasses.dataclass
class TrainConfig:
    env: str = "Gym-HalfCheetah-v5"
    algo: str = "drq"  # drq | mrq | drq_core | drq_minus_core | td3
    seed: int = 0
    steps: int = 1_000_000  # environment (agent) steps
    eval_every: int = 5_000
    eval_episodes: int = 10
    random_steps: int | None = None  # random-action warm-up; None: the algorithm's default (10k MR.Q/DR.Q, 25k TD3)
    checkpoint_every: int | None = None  # None: eval_every; 0: only at the end
    keep_replay: bool = True  # store the replay buffer in checkpoints (needed for resume)
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # hyperparameter overrides

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"TrainConfig.algo must be one of {list(ALGOS)}, got {self.algo!r}")
        for name in ("steps", "eval_every", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")


def build_agent(cfg: TrainConfig, env: ControlEnv):
    """The agent for `cfg.algo`, its buffer sized min(buffer_size, 2·steps + 2) (an episode adds at most 2 slots
    per step, so the buffer never wraps within the run; sampling cost scales with the capacity)."""
    if cfg.algo == "td3":
        extra = {"start_steps": cfg.random_steps} if cfg.random_steps is not None else {}
        hp = make_td3_hyperparameters(**{**extra, **cfg.overrides})
        return TD3(env.state_shape, env.action_dim, hp, min(hp.buffer_size, 2 * cfg.steps + 2))
    extra = {"buffer_size_before_training": cfg.random_steps} if cfg.random_steps is not None else {}
    hp = make_hyperparameters(cfg.algo, **{**extra, **cfg.overrides})
    return Agent(env.state_shape, env.action_dim, hp, env.pixel_obs, min(hp.buffer_size, 2 * cfg.steps + 2))


def evaluate(agent, env: ControlEnv, episodes: int) -> list[float]:
    """Returns of `episodes` episodes with the deterministic policy (no exploration noise)."""
    returns = []
    for _ in range(episodes):
        obs, total, done = env.reset(), 0.0, False
        while not done:
            obs, r, term, trunc = env.step(agent.act(obs, explore=False))
            total += r
            done = term or trunc
        returns.append(total)
    return returns


class Trainer:
    """One run: environment, evaluation environment, agent, counters; `run(until)` advances it."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False, verbose: bool = True):
        self.cfg, self.run_dir, self.verbose = cfg, Path(run_dir), verbose
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.env = make_env(cfg.env, cfg.seed)
        self.eval_env = make_env(cfg.env, cfg.seed + 100)
        self.agent = build_agent(cfg, self.env)
        self.action_rng = np.random.default_rng(cfg.seed)
        self.log = JsonlLog(self.run_dir / "metrics.jsonl")
        self.step = 0
        self.episode, self.episode_step, self.episode_return = 0, 0, 0.0
        self.obs: np.ndarray | None = None
        self.evals: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.ckpt_due = False
        self.rng = None  # this run's torch/numpy/python RNG states while another Trainer holds the process RNGs
        config = {"train": dataclasses.asdict(cfg), "hyperparameters": dataclasses.asdict(self.agent.hp)}
        if resume:
            ckpt = latest_checkpoint(self.run_dir)
            if ckpt is None:
                raise FileNotFoundError(f"--resume: no complete checkpoint under {self.run_dir / 'ckpt'}")
            saved = json.loads((self.run_dir / "config.json").read_text())
            if saved["hyperparameters"] != config["hyperparameters"] or saved["train"]["env"] != cfg.env:
                raise ValueError(f"--resume: {self.run_dir}/config.json has a different env or hyperparameters than this command")
            self._load(ckpt)
        else:
            if (self.run_dir / "metrics.jsonl").exists() or list_checkpoints(self.run_dir):
                raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out")
            self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.json", json.dumps(config, indent=2))
        self.rng = rng_state()

    # ------------------------------------------------------------------------- main loop

    def run(self, until: int | None = None) -> None:
        """Advance to step `min(until, cfg.steps)`; evaluates, logs and checkpoints on the way."""
        cfg, agent = self.cfg, self.agent
        until = cfg.steps if until is None else min(until, cfg.steps)
        set_rng_state(self.rng)
        ckpt_every = cfg.eval_every if cfg.checkpoint_every is None else cfg.checkpoint_every
        t0 = time.perf_counter()
        try:
            while self.step < until:
                if self.obs is None:
                    self.obs = self.env.reset()
                if agent.wants_random_action():
                    action = self.action_rng.uniform(-1.0, 1.0, agent.action_dim).astype(np.float32)
                else:
                    action = agent.act(self.obs, explore=True)
                next_obs, reward, term, trunc = self.env.step(action)
                agent.replay.add(self.obs, action, next_obs, reward, term, trunc)
                agent.train()
                self.step += 1
                self.episode_step += 1
                self.episode_return += reward
                self.obs = next_obs
                if term or trunc:
                    self.log.write({"step": self.step, "kind": "episode", "episode": self.episode,
                                    "return": self.episode_return, "length": self.episode_step})
                    self.episode += 1
                    self.episode_step, self.episode_return, self.obs = 0, 0.0, None
                if self.step % cfg.eval_every == 0:
                    self.train_seconds += time.perf_counter() - t0
                    self._evaluate()
                    t0 = time.perf_counter()
                if ckpt_every and self.step % ckpt_every == 0:
                    self.ckpt_due = True
                if self.ckpt_due and self.obs is None:
                    self.save_checkpoint()
            self.train_seconds += time.perf_counter() - t0
            if self.step >= cfg.steps and (latest_checkpoint(self.run_dir) is None or
                                           int(latest_checkpoint(self.run_dir).name.split("_")[1]) < self.step):
                self.save_checkpoint()
        finally:
            self.rng = rng_state()

    def _evaluate(self) -> None:
        returns = evaluate(self.agent, self.eval_env, self.cfg.eval_episodes)
        rec = {"step": self.step, "kind": "eval", "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
               "returns": returns, "train_seconds": round(self.train_seconds, 2),
               "steps_per_s": self._steps_per_s(), "training_steps": self.agent.training_steps,
               **self.agent.last_metrics}
        self.evals.append({"step": self.step, "return_mean": rec["return_mean"], "returns": returns,
                           "train_seconds": rec["train_seconds"], "training_steps": self.agent.training_steps})
        self.log.write(rec)
        self._write_curve()
        if self.verbose:
            print(f"[{self.cfg.algo} {self.cfg.env} seed {self.cfg.seed}] step {self.step:>8d}  eval {rec['return_mean']:9.1f} "
                  f"± {rec['return_std']:.1f}  ({rec['steps_per_s']:.1f} steps/s, {self.train_seconds:.0f}s)", flush=True)

    def _steps_per_s(self) -> float:
        return self.step / self.train_seconds if self.train_seconds > 0 else 0.0

    def _write_curve(self) -> None:
        lines = ["step,return_mean," + ",".join(f"ep{i}" for i in range(self.cfg.eval_episodes))]
        lines += [f"{e['step']},{e['return_mean']:.3f}," + ",".join(f"{r:.3f}" for r in e["returns"]) for e in self.evals]
        atomic_write_text(self.run_dir / "evals.csv", "\n".join(lines) + "\n")
        plot_curves({f"{self.cfg.algo}": self.evals}, self.run_dir / "curve.png", title=f"{self.cfg.env}, seed {self.cfg.seed}")

    # ------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> Path:
        state = {"agent": self.agent.state_dict(include_replay=self.cfg.keep_replay), "step": self.step,
                 "episode": self.episode, "episode_step": self.episode_step, "episode_return": self.episode_return,
                 "obs": self.obs, "evals": self.evals, "train_seconds": self.train_seconds,
                 "rng": rng_state(), "action_rng": self.action_rng.bit_generator.state,
                 "env_rng": self.env.rng_state(), "eval_env_rng": self.eval_env.rng_state()}
        final = self.run_dir / "ckpt" / f"step_{self.step}"
        with atomic_dir(final) as tmp:
            torch.save(state, tmp / "trainer.pt")  # the name `runs.list_checkpoints` looks for
        for old in list_checkpoints(self.run_dir)[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        self.ckpt_due = False
        return final

    def _load(self, ckpt: Path) -> None:
        state = torch.load(ckpt / "trainer.pt", weights_only=False)
        if "replay" not in state["agent"]:
            raise ValueError(f"{ckpt} was saved without its replay buffer (keep_replay=False) and cannot be resumed")
        self.agent.load_state_dict(state["agent"])
        self.step, self.episode = state["step"], state["episode"]
        self.evals, self.train_seconds = state["evals"], state["train_seconds"]
        self.action_rng.bit_generator.state = state["action_rng"]
        self.env.set_rng_state(state["env_rng"])
        self.eval_env.set_rng_state(state["eval_env_rng"])
        set_rng_state(state["rng"])
        self.episode_step, self.episode_return, self.obs = 0, 0.0, None
        if state["obs"] is not None:  # saved mid-episode: the environment cannot be restored, close it as truncated
            self.agent.replay.end_episode(state["obs"], truncated=True)
            self.episode += 1
        self.log.truncate_to_step(self.step)
        if self.verbose:
            print(f"resumed {self.run_dir} at step {self.step}", flush=True)


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                reference: dict[str, list[tuple[int, float]]] | None = None) -> None:
    """Evaluation return against environment steps, one line per curve (optional reference points, unjoined:
    published curves are sampled too sparsely to draw lines between them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, evals in curves.items():
        if evals:
            ax.plot([e["step"] for e in evals], [e["return_mean"] for e in evals], marker="o", ms=3, label=name)
    for name, pts in (reference or {}).items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="none", marker="x", ms=8, label=name)  # points only
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (10 episodes, deterministic)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def evaluate_run(run_dir: str | Path, episodes: int = 10, seed: int | None = None) -> dict[str, Any]:
    """Load a run's newest checkpoint and evaluate its deterministic policy on a fresh environment."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a `mentor control train` run directory (no config.json)")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to evaluate")
    cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text())["train"])
    seed = cfg.seed + 100 if seed is None else seed
    env = make_env(cfg.env, seed)
    seed_everything(seed)
    agent = build_agent(cfg, env)
    state = torch.load(ckpt / "trainer.pt", weights_only=False)
    agent.load_state_dict({k: v for k, v in state["agent"].items() if k != "replay"})
    returns = evaluate(agent, env, episodes)
    return {"run_dir": str(run_dir), "checkpoint": ckpt.name, "env": cfg.env, "algo": cfg.algo, "seed": seed,
            "returns": returns, "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns))}


def read_evals(run_dir: str | Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "eval"]
