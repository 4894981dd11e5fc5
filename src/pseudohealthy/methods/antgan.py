"""ANT-GAN (Sun et al., 2020): abnormal-to-normal translation with mask-guided losses.

A CycleGAN between pathological ("abnormal", A) and lesion-free ("normal", N) slices:
- `G_AN` (the synthesis generator) has a global shortcut inside the tanh: `tanh(net(x) + x)`
  (``output="shortcut"``); `G_NA` is a plain CycleGAN generator `tanh(net(x))`; both the GVS body.
- PatchGAN discriminators `D_N`, `D_A` (instance norm), least-squares GAN losses (CycleGAN's).
- Losses of the generators: `LSGAN(D_N(G_AN(x_p))) + LSGAN(D_A(G_NA(x_h)))`
  `+ w_cyc * (|G_NA(G_AN(x_p)) - x_p| + |G_AN(G_NA(x_h)) - x_h|)`
  `+ w_normal * mean over normal pixels (1 - y) of (G_AN(x_p) - x_p)^2` (the mask-guided L2 that keeps
  the subject's normal tissue).
Adam(lr 2e-4, betas (0.5, 0.999)) for both sides; one generator step then one discriminator step per batch.
"""
from __future__ import annotations

from typing import Any

import torch

from pseudohealthy.errors import UserError
from pseudohealthy.losses.gan import lsgan_loss
from pseudohealthy.methods import build_synthesis_generator
from pseudohealthy.methods.base import BaselineMethod, set_trainable
from pseudohealthy.models import build_critic, build_generator


def normal_tissue_l2(output: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the pixels outside the lesion (`lesion` `(B, 1, H, W)` in {0, 1})."""
    normal = 1.0 - lesion
    return ((output - target) ** 2 * normal).sum() / normal.sum().clamp_min(1.0)


class ANTGANModel(BaselineMethod):
    name = "antgan"
    loss_names = ("loss_d", "loss_g", "loss_adv", "loss_cycle", "loss_normal")

    def __init__(self, run_config: Any, device: torch.device | str = "cpu", distributed: bool = False,
                 healthy: Any = None) -> None:
        super().__init__(run_config, device, distributed, healthy)
        c, m = run_config.antgan, run_config.model
        self.nets = {
            "generator": build_synthesis_generator(run_config),
            "generator_na": build_generator(m, output="image"),
            "disc_n": build_critic(m, norm="instance"),
            "disc_a": build_critic(m, norm="instance"),
        }
        self.nets = {k: v.to(self.device) for k, v in self.nets.items()}
        generators = [*self.nets["generator"].parameters(), *self.nets["generator_na"].parameters()]
        discriminators = [*self.nets["disc_n"].parameters(), *self.nets["disc_a"].parameters()]
        self.opts = {"generators": torch.optim.Adam(generators, lr=c.lr, betas=tuple(c.betas)),
                     "discriminators": torch.optim.Adam(discriminators, lr=c.lr, betas=tuple(c.betas))}

    @classmethod
    def check_options(cls, run_config: Any) -> None:
        c = run_config.antgan
        if c.lr <= 0 or c.cycle_weight < 0 or c.normal_l2_weight < 0:
            raise UserError("antgan.lr must be positive and antgan.cycle_weight, antgan.normal_l2_weight not negative.")

    def optimize_parameters(self) -> dict[str, float]:
        c = self.config.antgan
        self.train_mode()
        discs = (self.nets["disc_n"], self.nets["disc_a"])
        for d in discs:
            set_trainable(d, False)
        fake_n = self.forward_net("generator", self.x_p)
        fake_a = self.forward_net("generator_na", self.x_h)
        adv = lsgan_loss(self.forward_net("disc_n", fake_n), True) + lsgan_loss(self.forward_net("disc_a", fake_a), True)
        cycle = ((self.forward_net("generator_na", fake_n) - self.x_p).abs().mean()
                 + (self.forward_net("generator", fake_a) - self.x_h).abs().mean())
        normal = normal_tissue_l2(fake_n, self.x_p, self.lesion)
        loss_g = adv + c.cycle_weight * cycle + c.normal_l2_weight * normal
        self.opts["generators"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.opts["generators"].step()
        for d in discs:
            set_trainable(d, True)
        loss_d = 0.5 * (lsgan_loss(self.forward_net("disc_n", self.x_h), True)
                        + lsgan_loss(self.forward_net("disc_n", fake_n.detach()), False)
                        + lsgan_loss(self.forward_net("disc_a", self.x_p), True)
                        + lsgan_loss(self.forward_net("disc_a", fake_a.detach()), False))
        self.opts["discriminators"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.opts["discriminators"].step()
        return self.losses_as_floats({"loss_d": loss_d, "loss_g": loss_g, "loss_adv": adv, "loss_cycle": cycle,
                                      "loss_normal": normal})
