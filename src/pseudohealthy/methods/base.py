"""What the three baselines share: input handling, named networks and optimisers, state, synthesis.

A baseline subclass builds its networks into ``self.nets`` (name -> module; ``generator`` is the
synthesis network) and its optimisers into ``self.opts``, and implements ``optimize_parameters``.
Baselines keep a constant learning rate (their papers decay none within our budgets) and train in one
process (no DDP).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pseudohealthy.checkpoints import unwrap
from pseudohealthy.device import autocast, eval_forward
from pseudohealthy.errors import UserError


def set_trainable(net: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze every parameter of ``net`` (the other player's net while one steps)."""
    for p in net.parameters():
        p.requires_grad_(trainable)


def adam(net: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas))


class BaselineMethod:
    """Base of the baseline method objects (the GVS contract: set_input, optimize_parameters, synthesize)."""

    name = ""
    loss_names: tuple[str, ...] = ()

    def __init__(self, run_config: Any, device: torch.device | str = "cpu", distributed: bool = False,
                 healthy: Any = None) -> None:
        self.check_options(run_config)
        if distributed:
            raise UserError(f"method {self.name} trains in one process; run it without torchrun.")
        self.config = run_config
        self.device = torch.device(device)
        self.amp = bool(run_config.train.amp)
        self.healthy = healthy
        self.nets: dict[str, nn.Module] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}

    @classmethod
    def check_options(cls, run_config: Any) -> None:
        """Refuse option values that cannot work, one sentence each (subclasses add their own)."""

    @property
    def generator(self) -> nn.Module:
        return self.nets["generator"]

    def networks(self) -> dict[str, nn.Module]:
        return dict(self.nets)

    # -- data ---------------------------------------------------------------------------------
    def set_input(self, batch: Any) -> None:
        """A batch `(image, lesion, region, case_id, slice_index)` of pathological slices, plus as many
        lesion-free slices of other training cases (`self.x_h`, `self.region_h`), all `(B, 1, H, W)`."""
        non_blocking = self.device.type == "cuda"
        self.x_p = batch[0].to(self.device, non_blocking=non_blocking)
        self.lesion = batch[1].to(self.device, non_blocking=non_blocking)
        self.region = batch[2].to(self.device, non_blocking=non_blocking)
        case_ids = list(batch[3]) if len(batch) > 3 else [""] * len(self.x_p)
        x_h, region_h = self.healthy.draw(case_ids)
        self.x_h = x_h.to(self.device)
        self.region_h = region_h.to(self.device)

    def forward_net(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``self.nets[name](x)`` under the CUDA-only autocast, as float32."""
        with autocast(self.device, self.amp):
            return self.nets[name](x).float()

    # -- inference, schedule, state ------------------------------------------------------------
    def synthesize(self, x: torch.Tensor) -> torch.Tensor:
        """The pseudo-healthy image in eval mode: `(B, 1, H, W)` -> `(B, 1, H, W)` float32 on x's device."""
        return eval_forward(unwrap(self.generator), x, self.device, self.amp)

    def step_schedulers(self) -> None:
        """Constant learning rates (see the module docstring)."""

    def decay_learning_rates(self, done: float) -> None:
        """Constant learning rates under a time budget too (see the module docstring)."""

    def learning_rates(self) -> dict[str, float]:
        return {f"lr_{name}": opt.param_groups[0]["lr"] for name, opt in self.opts.items()}

    def sync_buffers(self) -> None:
        """Nothing to synchronise in one process."""

    def train_mode(self) -> None:
        for net in self.nets.values():
            net.train()

    def state_dict(self) -> dict[str, Any]:
        """Every net and optimiser by name: tensors and plain values only."""
        state = {name: unwrap(net).state_dict() for name, net in self.nets.items()}
        state.update({f"opt_{name}": opt.state_dict() for name, opt in self.opts.items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in [*self.nets, *(f"opt_{n}" for n in self.opts)] if k not in state]
        if missing:
            raise UserError(f"checkpoint of method {self.name} lacks {', '.join(missing)}; was it written by another method?")
        for name, net in self.nets.items():
            unwrap(net).load_state_dict(state[name])
        for name, opt in self.opts.items():
            opt.load_state_dict(state[f"opt_{name}"])

    def losses_as_floats(self, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        """One host sync for all the step's numbers, in ``loss_names`` order."""
        values = torch.stack([losses[k].detach().float() for k in self.loss_names]).tolist()
        return dict(zip(self.loss_names, values))


class WGANGPMethod(BaselineMethod):
    """A baseline with WGAN-GP critics (VA-GAN, PHS-GAN): every call of ``optimize_parameters``
    updates the critics once on the current batch; every ``critic_steps``-th call also updates the
    generator side (WGAN-GP's n_critic, counted over batches so each critic step sees fresh data).
    The call counter travels in the checkpoint, so a resumed run steps the generator on the same calls.
    """

    critic_names: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.last_generator_losses: dict[str, torch.Tensor] = {}

    def critic_step(self, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], gp_weight: float) -> torch.Tensor:
        """One update of each named critic on its ``(real, fake)`` pair (fakes detached here); returns
        the summed critic loss (Wasserstein estimate plus weighted gradient penalty)."""
        from pseudohealthy.losses.gan import gradient_penalty, wgan_critic_loss

        total = torch.zeros((), device=self.device)
        for name, (real, fake) in pairs.items():
            critic = self.nets[name]
            set_trainable(critic, True)
            fake = fake.detach()
            loss = wgan_critic_loss(self.forward_net(name, real), self.forward_net(name, fake))
            loss = loss + gp_weight * gradient_penalty(critic, real, fake)
            self.opts[name].zero_grad(set_to_none=True)
            loss.backward()
            self.opts[name].step()
            total = total + loss.detach()
        return total

    def freeze_critics(self, frozen: bool) -> None:
        for name in self.critic_names:
            set_trainable(self.nets[name], not frozen)

    def generator_due(self, critic_steps: int) -> bool:
        """Count this call; True on every ``critic_steps``-th one."""
        self.calls += 1
        return self.calls % max(int(critic_steps), 1) == 0

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.calls = int(state.get("calls", 0))
