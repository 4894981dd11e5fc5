"""PHS-GAN (Xia et al., MIDL 2020 / MedIA 2020): pseudo-healthy synthesis by pathology factorisation.

Networks (all the size of GVS's: ModelConfig widths): a generator `G: x_p -> x_h'` (pseudo-healthy,
``output="image"``), a segmentor `S: x_p -> m'` (the GVS U-Net; the lesion probability is the map), a
reconstructor `R: (x_h', m') -> x_p'` (the generator body with two input channels) and two WGAN-GP
critics: `D_h` (lesion-free slices vs `G(x_p)`) and `D_p` (pathological slices vs `R(x_h, m)`).

Generator-side loss, with their code's weights w = [2, 10, 20, 1, 10, 10]:
- cycle 1 (pathological -> healthy + map -> pathological):
  `w0 * -D_h(G(x_p)) + w1 * Dice(S(x_p), y) + w2 * |R(G(x_p), S(x_p)) - x_p|`;
- cycle 2 (healthy + a real lesion map -> pathological -> healthy + map), with `m` the lesion mask of
  another slice of the batch restricted to the healthy slice's region:
  `w3 * -D_p(R(x_h, m)) + w4 * |G(R(x_h, m)) - x_h| + w5 * |S(R(x_h, m)) - m|`.
Adam(lr 1e-5, beta1 0.5) for everything; GP weight 10; ``critic_steps`` critic updates per G update.
"""
from __future__ import annotations

from typing import Any

import torch

from pseudohealthy.errors import UserError
from pseudohealthy.losses.gan import wgan_generator_loss
from pseudohealthy.methods import build_synthesis_generator
from pseudohealthy.methods.base import WGANGPMethod, adam
from pseudohealthy.models import build_critic, build_generator, build_segmentor


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """`1 - (2 sum(p y) + eps) / (sum p + sum y + eps)` over the batch; `(B, 1, H, W)` each."""
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + target.sum() + eps)


class PHSGANModel(WGANGPMethod):
    name = "phsgan"
    loss_names = ("loss_critic", "loss_g", "loss_adv", "loss_seg", "loss_rec")
    critic_names = ("critic_h", "critic_p")

    def __init__(self, run_config: Any, device: torch.device | str = "cpu", distributed: bool = False,
                 healthy: Any = None) -> None:
        super().__init__(run_config, device, distributed, healthy)
        c, m = run_config.phsgan, run_config.model
        self.nets = {
            "generator": build_synthesis_generator(run_config),
            "segmentor": build_segmentor(m),
            "reconstructor": build_generator(m, output="image", in_channels=2),
            "critic_h": build_critic(m, norm="none"),
            "critic_p": build_critic(m, norm="none"),
        }
        self.nets = {k: v.to(self.device) for k, v in self.nets.items()}
        players = [p for k in ("generator", "segmentor", "reconstructor") for p in self.nets[k].parameters()]
        # One optimiser over G, S and R (their code trains the three as one model).
        self.opts = {"players": torch.optim.Adam(players, lr=c.lr, betas=tuple(c.betas)),
                     "critic_h": adam(self.nets["critic_h"], c.lr, c.betas),
                     "critic_p": adam(self.nets["critic_p"], c.lr, c.betas)}
        zero = torch.zeros((), device=self.device)
        self.last_generator_losses = {k: zero for k in ("loss_g", "loss_adv", "loss_seg", "loss_rec")}

    @classmethod
    def check_options(cls, run_config: Any) -> None:
        c = run_config.phsgan
        if len(c.weights) != 6 or min(c.weights) < 0:
            raise UserError(f"phsgan.weights must be six non-negative numbers, got {list(c.weights)}.")
        if c.critic_steps < 1 or c.lr <= 0 or c.gp_weight < 0:
            raise UserError("phsgan.critic_steps must be at least 1, phsgan.lr positive and phsgan.gp_weight not negative.")

    def lesion_probability(self, x: torch.Tensor) -> torch.Tensor:
        """S's lesion probability `(B, 1, H, W)` (softmax of its two logits)."""
        return torch.softmax(self.forward_net("segmentor", x), dim=1)[:, 1:2]

    def reconstruct(self, image: torch.Tensor, lesion_map: torch.Tensor) -> torch.Tensor:
        return self.forward_net("reconstructor", torch.cat([image, lesion_map], dim=1))

    def optimize_parameters(self) -> dict[str, float]:
        c = self.config.phsgan
        w = c.weights
        self.train_mode()
        due = self.generator_due(c.critic_steps)
        # A real lesion map on a healthy slice: the batch's masks shifted by one, inside the slice's region.
        lesion_map = torch.roll(self.lesion, shifts=1, dims=0) * self.region_h
        with torch.set_grad_enabled(due):
            x_ph = self.forward_net("generator", self.x_p)
            x_sp = self.reconstruct(self.x_h, lesion_map)
        loss_critic = self.critic_step({"critic_h": (self.x_h, x_ph), "critic_p": (self.x_p, x_sp)}, c.gp_weight)
        if due:
            self.freeze_critics(True)
            adv = (w[0] * wgan_generator_loss(self.forward_net("critic_h", x_ph))
                   + w[3] * wgan_generator_loss(self.forward_net("critic_p", x_sp)))
            prob = self.lesion_probability(self.x_p)
            seg = soft_dice_loss(prob, self.lesion)
            rec = (w[2] * (self.reconstruct(x_ph, prob) - self.x_p).abs().mean()
                   + w[4] * (self.forward_net("generator", x_sp) - self.x_h).abs().mean()
                   + w[5] * (self.lesion_probability(x_sp) - lesion_map).abs().mean())
            loss = adv + w[1] * seg + rec
            self.opts["players"].zero_grad(set_to_none=True)
            loss.backward()
            self.opts["players"].step()
            self.freeze_critics(False)
            self.last_generator_losses = {"loss_g": loss.detach(), "loss_adv": adv.detach(), "loss_seg": seg.detach(),
                                          "loss_rec": rec.detach()}
        return self.losses_as_floats({"loss_critic": loss_critic, **self.last_generator_losses})
