"""MR.Q networks (Fujimoto et al. 2025, arXiv:2501.16142; `facebookresearch/MRQ:MRQ/models.py`), reused by DR.Q.

- `Encoder`: state encoder f(s) → z_s (MLP, or 4-layer CNN for 84×84 pixels), action embedding z_a, state-action
  encoder g(z_s, z_a) → z_sa and the linear model head z_sa → (done logit, ẑ_s', reward logits).
- `Value`: two Q heads on z_sa. `Policy`: deterministic tanh policy on z_s.
- LayerNorm without affine parameters before every activation; Xavier-uniform init with ReLU gain, zero bias.

Same shapes and initialisation as the reference code; written from the spec, no code copied. Departure: discrete
action spaces (Gumbel-softmax policy) are not implemented — `mentor control` covers continuous control only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def weight_init(layer: nn.Module) -> None:
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(layer.weight, nn.init.calculate_gain("relu"))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def ln_activ(x: torch.Tensor, activ) -> torch.Tensor:
    return activ(F.layer_norm(x, (x.shape[-1],)))


class MLP(nn.Module):
    """in → hdim → hdim → out, LN + activation after the two hidden layers, linear output."""

    def __init__(self, in_dim: int, out_dim: int, hdim: int, activ: str = "elu"):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(in_dim, hdim), nn.Linear(hdim, hdim), nn.Linear(hdim, out_dim)
        self.activ = _activation(activ)
        self.apply(weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ln_activ(self.l1(x), self.activ)
        x = ln_activ(self.l2(x), self.activ)
        return self.l3(x)


class Encoder(nn.Module):
    def __init__(self, state_shape: tuple[int, ...], action_dim: int, pixel_obs: bool, num_bins: int = 65,
                 zs_dim: int = 512, za_dim: int = 256, zsa_dim: int = 512, hdim: int = 512, activ: str = "elu"):
        super().__init__()
        self.pixel_obs, self.zs_dim, self.num_bins = pixel_obs, zs_dim, num_bins
        self.activ = _activation(activ)
        if pixel_obs:
            channels = state_shape[0]
            self.cnn = nn.ModuleList([nn.Conv2d(channels, 32, 3, stride=2), nn.Conv2d(32, 32, 3, stride=2),
                                      nn.Conv2d(32, 32, 3, stride=2), nn.Conv2d(32, 32, 3, stride=1)])
            self.zs_lin = nn.Linear(32 * 7 * 7, zs_dim)  # 84 → 41 → 20 → 9 → 7
        else:
            self.zs_mlp = MLP(state_shape[0], zs_dim, hdim, activ)
        self.za = nn.Linear(action_dim, za_dim)
        self.zsa = MLP(zs_dim + za_dim, zsa_dim, hdim, activ)
        self.model = nn.Linear(zsa_dim, 1 + zs_dim + num_bins)
        self.apply(weight_init)

    def zs(self, state: torch.Tensor) -> torch.Tensor:
        """f(s): state → z_s, ending in LN + activation."""
        if self.pixel_obs:
            x = state / 255.0 - 0.5
            for conv in self.cnn:
                x = self.activ(conv(x))
            return ln_activ(self.zs_lin(x.flatten(1)), self.activ)
        return ln_activ(self.zs_mlp(state), self.activ)

    def forward(self, zs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """g(z_s, a) → z_sa (linear output)."""
        return self.zsa(torch.cat([zs, self.activ(self.za(action))], 1))

    def model_all(self, zs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(done logit (B, 1), predicted next latent (B, zs_dim), reward logits (B, num_bins))."""
        out = self.model(self.forward(zs, action))
        return out[:, :1], out[:, 1 : 1 + self.zs_dim], out[:, 1 + self.zs_dim :]


class Policy(nn.Module):
    """Deterministic policy a = tanh(MLP(z_s)); returns the pre-activation too (MR.Q penalises its square)."""

    def __init__(self, action_dim: int, zs_dim: int = 512, hdim: int = 512, activ: str = "relu"):
        super().__init__()
        self.net = MLP(zs_dim, action_dim, hdim, activ)

    def forward(self, zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.net(zs)
        return torch.tanh(pre), pre

    def act(self, zs: torch.Tensor) -> torch.Tensor:
        return self.forward(zs)[0]


class _QHead(nn.Module):
    def __init__(self, zsa_dim: int, hdim: int, activ: str):
        super().__init__()
        self.body = MLP(zsa_dim, hdim, hdim, activ)
        self.out = nn.Linear(hdim, 1)
        self.activ = _activation(activ)
        self.apply(weight_init)

    def forward(self, zsa: torch.Tensor) -> torch.Tensor:
        return self.out(ln_activ(self.body(zsa), self.activ))


class Value(nn.Module):
    """Twin Q on z_sa: each 512 → 512 → 512 → 512 (LN + act hidden), LN + act, Linear → 1. Output (B, 2)."""

    def __init__(self, zsa_dim: int = 512, hdim: int = 512, activ: str = "elu"):
        super().__init__()
        self.q1, self.q2 = _QHead(zsa_dim, hdim, activ), _QHead(zsa_dim, hdim, activ)

    def forward(self, zsa: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q1(zsa), self.q2(zsa)], 1)
