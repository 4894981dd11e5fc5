"""Adversarial losses of the baselines: WGAN-GP (VA-GAN, PHS-GAN) and least squares (ANT-GAN, CycleGAN).

Critic scores are maps `(B, 1, h, w)` (PatchGAN critics); a sample's score is the mean of its map.
"""
from __future__ import annotations

import torch


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic side of WGAN: `E[D(fake)] - E[D(real)]` (minimised)."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator side of WGAN: `-E[D(fake)]`."""
    return -fake_scores.float().mean()


def gradient_penalty(critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP term `E[(||grad D(x_hat)||_2 - 1)^2]` at random interpolates of ``real`` and ``fake``
    (`(B, C, H, W)` each, ``fake`` detached by the caller); multiply by the GP weight (10)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def lsgan_loss(scores: torch.Tensor, target_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (CycleGAN's default): mean `(D(x) - t)^2` with `t` 1 for real, 0 for fake."""
    target = 1.0 if target_real else 0.0
    return ((scores.float() - target) ** 2).mean()
