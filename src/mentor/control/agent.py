"""MR.Q and DR.Q as one agent; the DR.Q changes are flags of one `Hyperparameters` dataclass.

MR.Q: Fujimoto et al., "Towards General-Purpose Model-Free Reinforcement Learning" (ICLR 2025,
arXiv:2501.16142), reference code `facebookresearch/MRQ:MRQ/MRQ.py`. DR.Q: Lyu et al., "Debiased Model-based
Representations for Sample-efficient Continuous Control" (ICML 2026, arXiv:2605.11711), reference code
`dmksjfl/DR.Q:DRQ/DRQ.py`. Re-implemented from `specs/drq.md`; no code copied.

Algorithm (one `train()` call per environment step once the buffer holds `buffer_size_before_training` steps):
- every `target_update_freq` (250) calls: hard-copy encoder/value/policy into their targets, roll the reward
  scales, then run 250 encoder updates on 5-step segments (latent unroll ẑ_{i+1} = model(ẑ_i, a_i), ẑ_0 = f(s_0));
- one value update (twin Q, Huber, 3-step target with TD3 target smoothing through the target encoder) and one
  policy update (deterministic policy gradient through the frozen encoder); LAP priorities from max_k |Q_k − y|.
The encoder is trained only by its own loss: value and policy updates see its outputs as constants.

DR.Q changes, each a field below (`preset="drq"` sets all ten, see `PRESETS`):
 1 `infonce_weight`/`infonce_tau` — InfoNCE between the model's ẑ_{i+1} and the target encoder's f̄(s_{i+1});
 2 `faded_replay`/`fade_decay`/`fade_floor` — sampling weight max(decay^age, floor) on top of LAP;
 3 `done_weight` 0; 4 `enc_hdim` 750; 5 `enc_lr` 3e-4, `enc_wd` 0.01; 6 `value_wd`, `policy_wd` 0.01;
 7 `value_grad_clip` None; 8 `pre_activ_weight` 0; 9 `target_reward_scaling` off; 10 `nstep_form` "standard".

Departures: continuous actions only (no Gumbel-softmax discrete head); the two-hot encoding clamps rewards outside
the bin range (see `losses.two_hot`); pixel augmentation (random shift) is applied when `pixel_augs` and the state
is an image, as in MR.Q.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import losses as L
from .buffer import ReplayBuffer
from .networks import Encoder, Policy, Value


@dataclasses.dataclass
class Hyperparameters:
    """MR.Q's defaults (`facebookresearch/MRQ:MRQ/MRQ.py`, `Hyperparameters`) plus DR.Q's flags set to MR.Q values."""

    # generic
    batch_size: int = 256
    buffer_size: int = 1_000_000
    discount: float = 0.99
    target_update_freq: int = 250  # hard target copy + encoder updates every this many training steps
    # exploration
    buffer_size_before_training: int = 10_000  # random actions and no training until the buffer holds this many
    exploration_noise: float = 0.2
    # TD3-style target smoothing
    target_policy_noise: float = 0.2
    noise_clip: float = 0.3
    # encoder loss weights
    dyn_weight: float = 1.0
    reward_weight: float = 0.1
    done_weight: float = 0.1  # DR.Q #3: 0
    # LAP replay
    prioritized: bool = True
    alpha: float = 0.4
    min_priority: float = 1.0
    enc_horizon: int = 5
    Q_horizon: int = 3
    # encoder model
    zs_dim: int = 512
    zsa_dim: int = 512
    za_dim: int = 256
    enc_hdim: int = 512  # DR.Q #4: 750
    enc_activ: str = "elu"
    enc_lr: float = 1e-4  # DR.Q #5: 3e-4
    enc_wd: float = 1e-4  # DR.Q #5: 0.01
    pixel_augs: bool = True
    # value model
    value_hdim: int = 512
    value_activ: str = "elu"
    value_lr: float = 3e-4
    value_wd: float = 1e-4  # DR.Q #6: 0.01
    value_grad_clip: float | None = 20.0  # DR.Q #7: None (no clipping)
    # policy model
    policy_hdim: int = 512
    policy_activ: str = "relu"
    policy_lr: float = 3e-4
    policy_wd: float = 1e-4  # DR.Q #6: 0.01
    pre_activ_weight: float = 1e-5  # DR.Q #8: 0
    # reward model (two-hot over symexp bins)
    num_bins: int = 65
    lower: float = -10.0
    upper: float = 10.0
    # DR.Q flags (MR.Q values here)
    infonce_weight: float = 0.0  # DR.Q #1: 0.1
    infonce_tau: float = 0.1
    faded_replay: bool = False  # DR.Q #2: True
    fade_decay: float = 0.9999
    fade_floor: float = 0.1
    target_reward_scaling: bool = True  # DR.Q #9: False (y = R + D·min Q̄; scales still computed)
    nstep_form: str = "mrq"  # DR.Q #10: "standard"

    def __post_init__(self):
        if self.nstep_form not in ("mrq", "standard"):
            raise ValueError(f"Hyperparameters.nstep_form must be 'mrq' or 'standard', got {self.nstep_form!r}")
        for name in ("batch_size", "buffer_size", "target_update_freq", "enc_horizon", "Q_horizon", "num_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Hyperparameters.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"Hyperparameters.discount must be in (0, 1], got {self.discount}")


_CORE = {"infonce_weight": 0.1, "infonce_tau": 0.1, "faded_replay": True, "fade_decay": 0.9999, "fade_floor": 0.1}
_SILENT = {"done_weight": 0.0, "enc_hdim": 750, "enc_lr": 3e-4, "enc_wd": 0.01, "value_wd": 0.01, "policy_wd": 0.01,
           "value_grad_clip": None, "pre_activ_weight": 0.0, "target_reward_scaling": False, "nstep_form": "standard"}

PRESETS: dict[str, dict[str, Any]] = {
    "mrq": {},
    "drq": {**_CORE, **_SILENT},
    "drq_core": dict(_CORE),  # MR.Q + the paper's two components only
    "drq_minus_core": dict(_SILENT),  # MR.Q + the unreported changes only
}


def make_hyperparameters(preset: str = "drq", **overrides: Any) -> Hyperparameters:
    """The preset's values, then `overrides` (unknown names are an error naming the allowed fields)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; allowed: {sorted(fields)}")
    return Hyperparameters(**{**PRESETS[preset], **overrides})


def shift_augment(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random shift by up to ±pad pixels (replicate padding, bilinear resampling), per image, as in MR.Q/DrQ."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    eps = 1.0 / (h + 2 * pad)
    ar = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad)[:h]
    base = torch.stack(torch.meshgrid(ar, ar, indexing="xy"), dim=-1)[None].expand(n, h, w, 2)
    shift = torch.randint(0, 2 * pad + 1, (n, 1, 1, 2)).float() * (2.0 / (h + 2 * pad))
    return F.grid_sample(padded, base + shift, padding_mode="zeros", align_corners=False)


class Agent:
    """MR.Q / DR.Q agent: networks, targets, optimisers and replay, MR.Q style."""

    def __init__(self, state_shape: tuple[int, ...], action_dim: int, hp: Hyperparameters, pixel_obs: bool = False,
                 buffer_capacity: int | None = None):
        self.hp, self.pixel_obs, self.action_dim = hp, pixel_obs, action_dim
        self.state_shape = tuple(state_shape)
        capacity = int(buffer_capacity or hp.buffer_size)
        self.replay = ReplayBuffer(self.state_shape, action_dim, capacity, max(hp.enc_horizon, hp.Q_horizon), hp.batch_size,
                                   prioritized=hp.prioritized, initial_priority=hp.min_priority, faded=hp.faded_replay,
                                   fade_decay=hp.fade_decay, fade_floor=hp.fade_floor, pixel_obs=pixel_obs)
        self.encoder = Encoder(self.state_shape, action_dim, pixel_obs, hp.num_bins, hp.zs_dim, hp.za_dim, hp.zsa_dim,
                               hp.enc_hdim, hp.enc_activ)
        self.policy = Policy(action_dim, hp.zs_dim, hp.policy_hdim, hp.policy_activ)
        self.value = Value(hp.zsa_dim, hp.value_hdim, hp.value_activ)
        self.encoder_target = copy.deepcopy(self.encoder).requires_grad_(False)
        self.policy_target = copy.deepcopy(self.policy).requires_grad_(False)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False)
        self.encoder_opt = torch.optim.AdamW(self.encoder.parameters(), lr=hp.enc_lr, weight_decay=hp.enc_wd)
        self.policy_opt = torch.optim.AdamW(self.policy.parameters(), lr=hp.policy_lr, weight_decay=hp.policy_wd)
        self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=hp.value_lr, weight_decay=hp.value_wd)
        self.bins = L.symexp_bins(hp.lower, hp.upper, hp.num_bins)
        self.reward_scale, self.target_reward_scale = 1.0, 0.0
        self.training_steps = 0
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------------- acting

    def wants_random_action(self) -> bool:
        return self.replay.size < self.hp.buffer_size_before_training

    @torch.no_grad()
    def act(self, state: np.ndarray, explore: bool) -> np.ndarray:
        """Normalised action in [−1, 1]; Gaussian exploration noise N(0, σ²) when `explore`."""
        s = torch.as_tensor(np.asarray(state), dtype=torch.float32).reshape(1, *self.state_shape)
        a = self.policy.act(self.encoder.zs(s))
        if explore:
            a = a + torch.randn_like(a) * self.hp.exploration_noise
        return a.clamp(-1, 1)[0].numpy()

    # ------------------------------------------------------------------------- training

    def train(self) -> None:
        """One training step (call once per environment step after `replay.add`)."""
        hp = self.hp
        if self.replay.size <= hp.buffer_size_before_training:
            return
        self.training_steps += 1
        if (self.training_steps - 1) % hp.target_update_freq == 0:
            self.encoder_target.load_state_dict(self.encoder.state_dict())
            self.policy_target.load_state_dict(self.policy.state_dict())
            self.value_target.load_state_dict(self.value.state_dict())
            self.target_reward_scale = self.reward_scale
            self.reward_scale = self.replay.reward_scale()
            for _ in range(hp.target_update_freq):
                state, action, next_state, reward, not_done = self.replay.sample_segments(hp.enc_horizon)
                state, action, next_state = self._augment(state, action, next_state)
                self.train_encoder(state, action, next_state, reward, not_done)
        state, action, next_state, rewards_BH, not_done_BH = self.replay.sample_nstep(hp.Q_horizon)
        state, _, next_state = self._augment(state, action, next_state)
        q_BK, target_B1 = self.train_rl(state, action, next_state, rewards_BH, not_done_BH)
        if hp.prioritized:
            self.replay.update_priority(L.lap_priority((q_BK - target_B1).abs().max(1).values, hp.alpha, hp.min_priority))

    def _augment(self, state, action, next_state):
        if not (self.pixel_obs and self.hp.pixel_augs):
            return state, action, next_state
        both = torch.cat([state.reshape(-1, *self.state_shape), next_state.reshape(-1, *self.state_shape)])
        s, ns = shift_augment(both).chunk(2)
        return s.reshape(state.shape), action, ns.reshape(next_state.shape)

    def encoder_loss(self, state_BH, action_BH, next_state_BH, reward_BH, not_done_BH) -> tuple[torch.Tensor, dict]:
        """Σ_i [dyn·MSE_m + reward·CE·m + done·MSE_m(done) + infonce·NCE_m] over the `enc_horizon` unroll."""
        hp = self.hp
        B, H = action_BH.shape[:2]
        with torch.no_grad():
            target_zs_BHD = self.encoder_target.zs(next_state_BH.reshape(B * H, *self.state_shape)).reshape(B, H, -1)
        pred_zs = self.encoder.zs(state_BH[:, 0])
        mask_B1 = torch.ones(B, 1)
        total = torch.zeros(())
        parts = {"dyn": 0.0, "reward": 0.0, "done": 0.0, "infonce": 0.0}
        for i in range(H):
            done_logit, pred_zs, reward_logits = self.encoder.model_all(pred_zs, action_BH[:, i])
            dyn = L.masked_mse(pred_zs, target_zs_BHD[:, i], mask_B1)
            rew = (L.two_hot_cross_entropy(reward_logits, reward_BH[:, i], self.bins) * mask_B1).mean()
            loss = hp.dyn_weight * dyn + hp.reward_weight * rew
            parts["dyn"] += dyn.item()
            parts["reward"] += rew.item()
            if hp.done_weight > 0 and self.replay.env_terminates:
                done = L.masked_mse(done_logit, 1.0 - not_done_BH[:, i : i + 1], mask_B1)
                loss = loss + hp.done_weight * done
                parts["done"] += done.item()
            if hp.infonce_weight > 0:
                nce = L.infonce_loss(pred_zs, target_zs_BHD[:, i], mask_B1, hp.infonce_tau)
                loss = loss + hp.infonce_weight * nce
                parts["infonce"] += nce.item()
            total = total + loss
            mask_B1 = mask_B1 * not_done_BH[:, i : i + 1]
        return total, parts

    def train_encoder(self, state_BH, action_BH, next_state_BH, reward_BH, not_done_BH) -> None:
        loss, parts = self.encoder_loss(state_BH, action_BH, next_state_BH, reward_BH, not_done_BH)
        self.encoder_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.encoder_opt.step()
        self.last_metrics.update({f"enc/{k}": v for k, v in parts.items()} | {"enc/loss": loss.item()})

    def value_target_of(self, next_state, rewards_BH, not_done_BH) -> torch.Tensor:
        hp = self.hp
        with torch.no_grad():
            next_zs = self.encoder_target.zs(next_state)
            next_action = L.smoothed_target_action(self.policy_target.act(next_zs), hp.target_policy_noise, hp.noise_clip)
            next_q = self.value_target(self.encoder_target(next_zs, next_action)).min(1, keepdim=True).values
            R, D = L.nstep_returns(rewards_BH, not_done_BH, hp.discount, hp.nstep_form)
            return L.mrq_value_target(R, D, next_q, self.reward_scale, self.target_reward_scale, hp.target_reward_scaling)

    def train_rl(self, state, action, next_state, rewards_BH, not_done_BH) -> tuple[torch.Tensor, torch.Tensor]:
        hp = self.hp
        target_B1 = self.value_target_of(next_state, rewards_BH, not_done_BH)
        with torch.no_grad():  # the encoder is trained only by its own loss
            zs = self.encoder.zs(state)
            zsa = self.encoder(zs, action)
        q_BK = self.value(zsa)
        value_loss = F.smooth_l1_loss(q_BK, target_B1.expand(-1, 2))
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        if hp.value_grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.value.parameters(), hp.value_grad_clip)
        self.value_opt.step()

        # Policy gradient through g and Q. MR.Q lets this backward also fill .grad of the value net and the encoder,
        # then discards those on their next zero_grad(set_to_none); freezing them here gives the same updates
        # without computing the unused weight gradients (~15% of an update on CPU).
        self.value.requires_grad_(False)
        self.encoder.requires_grad_(False)
        try:
            policy_action, pre_activ = self.policy(zs)
            q_pi = self.value(self.encoder(zs, policy_action))
            policy_loss = -q_pi.mean() + hp.pre_activ_weight * pre_activ.pow(2).mean()
            self.policy_opt.zero_grad(set_to_none=True)
            policy_loss.backward()
            self.policy_opt.step()
        finally:
            self.value.requires_grad_(True)
            self.encoder.requires_grad_(True)
        self.last_metrics.update({"value_loss": value_loss.item(), "policy_loss": policy_loss.item(),
                                  "q_mean": q_BK.mean().item(), "reward_scale": self.reward_scale})
        return q_BK.detach(), target_B1

    # ------------------------------------------------------------------------- checkpointing

    _NETS = ("encoder", "encoder_target", "policy", "policy_target", "value", "value_target",
             "encoder_opt", "policy_opt", "value_opt")

    def state_dict(self, include_replay: bool = True) -> dict:
        sd = {k: getattr(self, k).state_dict() for k in self._NETS}
        sd.update(hp=dataclasses.asdict(self.hp), reward_scale=self.reward_scale,
                  target_reward_scale=self.target_reward_scale, training_steps=self.training_steps)
        if include_replay:
            sd["replay"] = self.replay.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        if sd["hp"] != dataclasses.asdict(self.hp):
            diff = {k: (v, sd["hp"].get(k)) for k, v in dataclasses.asdict(self.hp).items() if sd["hp"].get(k) != v}
            raise ValueError(f"Agent.load_state_dict: hyperparameters differ from the checkpoint (now, saved): {diff}")
        for k in self._NETS:
            getattr(self, k).load_state_dict(sd[k])
        self.reward_scale, self.target_reward_scale = sd["reward_scale"], sd["target_reward_scale"]
        self.training_steps = sd["training_steps"]
        if "replay" in sd:
            self.replay.load_state_dict(sd["replay"])
