"""VA-GAN (Baumgartner et al., CVPR 2018): visual feature attribution with a Wasserstein GAN.

The generator predicts an additive map `M(x_p)`; the pseudo-healthy image is `x_p + M(x_p)`
(``output="additive"``: the GVS encoder-decoder without the tanh). A WGAN-GP critic tells lesion-free
training slices (unpaired, other subjects) from `x_p + M`; an L1 penalty keeps the map small:
`L_G = -E[D(x_p + M)] + w_L1 * mean|M|`, w_L1 = 100 (their code); GP weight 10; 5 critic steps per
generator step; Adam(lr 1e-3, betas (0, 0.9)). VA-GAN uses image-level labels only: the lesion
masks are not used in training.
"""
from __future__ import annotations

from typing import Any

import torch

from pseudohealthy.errors import UserError
from pseudohealthy.losses.gan import wgan_generator_loss
from pseudohealthy.methods import build_synthesis_generator
from pseudohealthy.methods.base import WGANGPMethod, adam
from pseudohealthy.models import build_critic


class VAGANModel(WGANGPMethod):
    name = "vagan"
    loss_names = ("loss_critic", "loss_g", "loss_adv", "loss_map")
    critic_names = ("critic",)

    def __init__(self, run_config: Any, device: torch.device | str = "cpu", distributed: bool = False,
                 healthy: Any = None) -> None:
        super().__init__(run_config, device, distributed, healthy)
        c = run_config.vagan
        self.nets = {"generator": build_synthesis_generator(run_config).to(self.device),
                     "critic": build_critic(run_config.model, norm="none").to(self.device)}
        self.opts = {name: adam(net, c.lr, c.betas) for name, net in self.nets.items()}
        self.last_generator_losses = {k: torch.zeros((), device=self.device) for k in ("loss_g", "loss_adv", "loss_map")}

    @classmethod
    def check_options(cls, run_config: Any) -> None:
        c = run_config.vagan
        if c.critic_steps < 1 or c.lr <= 0 or c.gp_weight < 0 or c.map_l1_weight < 0:
            raise UserError("vagan.critic_steps must be at least 1, vagan.lr positive, and the loss weights not negative.")

    def optimize_parameters(self) -> dict[str, float]:
        """One critic step on this batch; every ``critic_steps``-th call also one generator step."""
        c = self.config.vagan
        self.train_mode()
        due = self.generator_due(c.critic_steps)
        with torch.set_grad_enabled(due):  # G's graph is kept only when G steps on this batch
            x_s = self.forward_net("generator", self.x_p)
        loss_critic = self.critic_step({"critic": (self.x_h, x_s)}, c.gp_weight)
        if due:
            self.freeze_critics(True)
            attribution = x_s - self.x_p  # the map M
            adversarial = wgan_generator_loss(self.forward_net("critic", x_s))
            map_l1 = attribution.abs().mean()
            loss = adversarial + c.map_l1_weight * map_l1
            self.opts["generator"].zero_grad(set_to_none=True)
            loss.backward()
            self.opts["generator"].step()
            self.freeze_critics(False)
            self.last_generator_losses = {"loss_g": loss.detach(), "loss_adv": adversarial.detach(), "loss_map": map_l1.detach()}
        return self.losses_as_floats({"loss_critic": loss_critic, **self.last_generator_losses})
