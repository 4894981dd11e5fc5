"""The GVS method object: owns G and S, both Adam optimisers and both poly schedulers (paper section III).

One training iteration on a batch `(x_p, y_t)`:
- Step A (G fixed, S updated): `L_s = CE(S(x_s), y_t)` (basic) or the difference-aware `L_wce` (full
  GVS), with `x_s = G(x_p)` detached.
- Step B (S fixed, G updated): `L_G = CE(S(G(x_p)), 0) + lambda * MSE(x_p, G(x_p))`.
`step_order = seg-first` runs A then B (paper); `gen-first` runs B then A and lets A reuse B's
generator output (reference code). Under seg-first, G does not change during Step A, so one G
forward with gradient feeds both steps (detached in A): the parameters after the step equal those
of the naive two-forward version (tests/training/test_gvs_step.py), at one G forward less.

The loop never touches `requires_grad`: freezing one net while the other steps lives here. S is
frozen in Step B (no weight gradients are computed for it); G needs no freezing in Step A because S
sees a detached `x_s`.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from pseudohealthy.config import RunConfig
from pseudohealthy.errors import UserError
from pseudohealthy.losses import adversarial_ce, difference_aware_ce, residual_mse, segmentation_ce
from pseudohealthy.losses.gate import gate_loss
from pseudohealthy.losses.residual import lesion_fill_mse, supervised_l1
from pseudohealthy.models import build_generator, build_segmentor
from pseudohealthy.models.generator import dilate_one_pixel, teaching_hole
from pseudohealthy.training.checkpoint import unwrap
from pseudohealthy.training.device import autocast, eval_forward
from pseudohealthy.training.schedule import poly_scheduler

SEG_LOSSES = ("wce", "ce")
STEP_ORDERS = ("seg-first", "gen-first")
RESIDUAL_REGIONS = ("image", "normal")


def check_train_options(run_config: RunConfig) -> None:
    """Refuse unknown option values with one sentence (before any work starts)."""
    t = run_config.train
    for name, value, allowed in (("seg_loss", t.seg_loss, SEG_LOSSES), ("step_order", t.step_order, STEP_ORDERS),
                                 ("residual_region", t.residual_region, RESIDUAL_REGIONS)):
        if value not in allowed:
            raise UserError(f"train.{name}={value!r} is unknown; choose one of {', '.join(allowed)}.")
    if t.supervised_weight < 0 or t.adversarial_weight < 0:
        raise UserError("train.supervised_weight and train.adversarial_weight must not be negative.")
    if t.gate_fine_every < 0 or (t.gate_fine_every > 0 and not gate_is_coarse(run_config)):
        raise UserError(f"train.gate_fine_every={t.gate_fine_every} must be 0 (off) or a positive number of steps, and "
                        "needs a gate that runs at a coarser scale (model.gen_arch=unet, model.gen_gate_scale > 1).")
    if t.gate_small_lesion_area < 0:
        raise UserError(f"train.gate_small_lesion_area={t.gate_small_lesion_area:g} must be 0 (off) or a positive number of pixels.")
    m = run_config.model
    taught_by_masks = m.gen_gate and m.gen_gate_from_masks and t.gate_weight > 0
    if t.adversarial_weight == 0 and t.supervised_weight == 0 and not taught_by_masks:
        raise UserError("train.adversarial_weight=0 needs train.supervised_weight > 0 (or a gate taught by the masks, "
                        "model.gen_gate_from_masks=true): otherwise nothing teaches G to heal.")
    if t.fill_on_gate and t.fill_weight == 0:
        raise UserError("train.fill_on_gate teaches the learned fill where the gate opens: it needs train.fill_weight > 0.")
    if t.fill_weight < 0 or (t.fill_weight > 0 and not (m.gen_fill_net and m.gen_arch == "unet")):
        raise UserError(f"train.fill_weight={t.fill_weight:g} must be 0 or, to teach a learned fill, positive with "
                        "model.gen_fill_net=true and model.gen_arch=unet.")
    if t.gate_weight > 0 and not m.gen_gate:
        raise UserError("train.gate_weight > 0 needs a gated generator (model.gen_gate=true).")
    if m.gen_gate and m.gen_gate_from_masks and t.gate_weight <= 0:
        raise UserError("model.gen_gate_from_masks=true needs train.gate_weight > 0: the masks are then the gate's only teacher.")
    if not 0.0 <= t.ema_decay < 1.0:
        raise UserError(f"train.ema_decay={t.ema_decay:g} must be 0 (off) or a decay per step in (0, 1), for example 0.995.")
    if t.max_minutes is not None and t.max_minutes <= 0:
        raise UserError(f"train.max_minutes={t.max_minutes}: the time budget must be positive (or null for none).")
    if t.epochs < 1 or t.batch_size < 1:
        raise UserError(f"train.epochs ({t.epochs}) and train.batch_size ({t.batch_size}) must be at least 1.")


def gate_is_coarse(run_config: RunConfig) -> bool:
    """Whether the generator is a gated U-Net that looks at the slice at a coarser scale."""
    m = run_config.model
    return m.gen_gate and m.gen_arch == "unet" and m.gen_gate_scale > 1


@contextlib.contextmanager
def gate_at_full_resolution(generator: nn.Module):
    """Run a coarse-scale gated U-Net at full resolution inside the block (``train.gate_fine_every``)."""
    net = unwrap(generator)
    scale = net.scale
    net.scale = 1
    try:
        yield
    finally:
        net.scale = scale


def averaged_copy(generator: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``generator``'s weights and BatchNorm statistics (torch's
    AveragedModel; the first update copies the weights), updated after every G step."""
    return AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _set_trainable(net: nn.Module, trainable: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(trainable)


class GVSModel:
    """G and S with their optimisers and schedulers; `set_input`, `optimize_parameters`, `synthesize`.

    ``distributed``: wrap both nets in DistributedDataParallel (the process group must exist).
    ``share_generator_forward``: under seg-first, one G forward feeds Step A and Step B (default);
    False runs the naive two forwards (kept for the equivalence test and the benchmark).
    """

    # Registered as method `gvs` (pseudohealthy.methods): the loop reads these two.
    loss_names = ("loss_s", "loss_g", "loss_adv", "loss_res", "loss_sup")
    check_options = staticmethod(check_train_options)

    def __init__(self, run_config: RunConfig, device: torch.device | str = "cpu", distributed: bool = False,
                 share_generator_forward: bool = True) -> None:
        check_train_options(run_config)
        self.config = run_config
        self.train_cfg = run_config.train
        self.device = torch.device(device)
        self.amp = bool(self.train_cfg.amp)
        self.share_generator_forward = share_generator_forward
        generator = build_generator(run_config.model).to(self.device)
        segmentor = build_segmentor(run_config.model).to(self.device)
        self.distributed = distributed
        if distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            generator = nn.parallel.DistributedDataParallel(generator, device_ids=ids)
            segmentor = nn.parallel.DistributedDataParallel(segmentor, device_ids=ids)
        self.generator = generator
        self.segmentor = segmentor
        t = self.train_cfg
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr, betas=tuple(t.betas))
        self.opt_s = torch.optim.Adam(self.segmentor.parameters(), lr=t.lr, betas=tuple(t.betas))
        self.sched_g = poly_scheduler(self.opt_g, t.epochs, t.poly_power)
        self.sched_s = poly_scheduler(self.opt_s, t.epochs, t.poly_power)
        self.generator_ema = averaged_copy(unwrap(self.generator), t.ema_decay) if t.ema_decay > 0 else None
        self.x_p: torch.Tensor | None = None
        self.g_input: torch.Tensor | None = None  # what G sees: x_p, or x_p and its mirror image
        self.steps_done = 0  # iterations so far (train.gate_fine_every counts them; kept in the checkpoint)
        self.lesion: torch.Tensor | None = None
        self.region: torch.Tensor | None = None
        self.healthy: torch.Tensor | None = None

    # -- data ---------------------------------------------------------------------------------
    def set_input(self, batch: Any) -> None:
        """Take a batch `(image, lesion, region, case_id, slice_index)` of the slice dataset.

        `image`: `(B, 1, H, W)` float32 in [-1, 1] (with a mirror gate ``(B, 2, H, W)``: the slice and its
        mirror image, which only G sees); `lesion`: `(B, 1, H, W)` float32 in {0, 1}.
        """
        image, lesion = batch[0], batch[1]
        non_blocking = self.device.type == "cuda"
        self.g_input = image.to(self.device, non_blocking=non_blocking)
        self.x_p = self.g_input[:, :1]
        self.lesion = lesion.to(self.device, non_blocking=non_blocking)
        self.region = batch[2].to(self.device, non_blocking=non_blocking) if len(batch) > 2 else torch.ones_like(self.lesion)
        # The true healthy slice (NaN where unknown) when the data set has one and the recipe uses it.
        self.healthy = batch[5].to(self.device, non_blocking=non_blocking) if len(batch) > 5 else None

    # -- the two steps ------------------------------------------------------------------------
    def _segmentor_loss(self, x_s: torch.Tensor) -> torch.Tensor:
        """Step A's loss on a detached synthetic batch `(B, 1, H, W)`."""
        with autocast(self.device, self.amp):
            logits = self.segmentor(x_s)
        if self.train_cfg.seg_loss == "wce":
            return difference_aware_ce(logits, self.lesion, self.x_p, x_s, self.train_cfg.wce_floor)
        return segmentation_ce(logits, self.lesion)

    def _step_a(self, x_s: torch.Tensor) -> torch.Tensor:
        """Update S on `x_s` (detached from G); returns the loss."""
        _set_trainable(self.segmentor, True)
        loss = self._segmentor_loss(x_s.detach())
        self.opt_s.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_s.step()
        return loss.detach()

    def _step_b(self, x_s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Update G through the fixed S; ``x_s`` must carry G's graph."""
        _set_trainable(self.segmentor, False)
        if self.train_cfg.segmentor_eval_in_g_step:
            # A fixed S in the strict sense: its BatchNorm uses running statistics, so G cannot fool it
            # by shifting the batch statistics, and Step B leaves S's buffers untouched.
            self.segmentor.eval()
        # S is a fixed function here: under DDP skip its gradient all-reduce (its frozen parameters
        # receive no gradient, so there is nothing to synchronise).
        t = self.train_cfg
        if t.adversarial_weight > 0:
            sync_off = self.segmentor.no_sync() if self.distributed else contextlib.nullcontext()
            with sync_off, autocast(self.device, self.amp):
                logits = self.segmentor(x_s)
            adversarial = adversarial_ce(logits)
        else:
            adversarial = x_s.new_zeros(())
        normal_only = t.residual_region == "normal"
        residual = residual_mse(self.x_p, x_s, self.lesion if normal_only else None)
        loss = t.adversarial_weight * adversarial + t.lambda_residual * residual
        if t.lesion_fill_weight > 0:
            loss = loss + t.lesion_fill_weight * lesion_fill_mse(self.x_p, x_s, self.lesion, self.region)
        supervised = x_s.new_zeros(())
        if t.fill_weight > 0:
            # the learned fill of the true lesion masks against the truth inside them (losses/residual.py)
            taught = teaching_hole(self.lesion, self.gate_logit, t.fill_on_gate)
            supervised = supervised_l1(self.true_hole_fill, self.healthy, dilate_one_pixel(taught))[1]
            loss = loss + t.fill_weight * supervised
        if t.supervised_weight > 0:
            if self.healthy is None:
                raise RuntimeError("train.supervised_weight > 0 needs batches with the true healthy slice")
            normal, inside = supervised_l1(x_s, self.healthy, self.lesion)
            supervised = supervised + normal + inside
            loss = loss + t.supervised_weight * supervised
        if t.gate_weight > 0:
            # The gate is a segmentation of what G should change: every lesion pixel, real or inserted.
            loss = loss + t.gate_weight * gate_loss(self.gate_logit, self.lesion, dice=t.gate_dice,
                                                     small_lesion_area=t.gate_small_lesion_area)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(unwrap(self.generator))
        _set_trainable(self.segmentor, True)
        self.segmentor.train()
        return {"loss_g": loss.detach(), "loss_adv": adversarial.detach(), "loss_res": residual.detach(),
                "loss_sup": supervised.detach()}

    def _generate(self) -> torch.Tensor:
        """``G(x_p)``; a gated generator's gate logits are kept in ``self.gate_logit`` for Step B."""
        with autocast(self.device, self.amp):
            if self.config.model.gen_gate:
                # train.fill_weight: the same forward also fills the true lesion masks with the learned fill
                teach = ({"hole": self.lesion, "hole_with_gate": self.train_cfg.fill_on_gate}
                         if self.train_cfg.fill_weight > 0 else {})
                out, gate, *taught = self.generator(self.g_input, return_gate=True, **teach)
                self.gate_logit = gate.float()
                self.true_hole_fill = taught[0].float() if taught else None
                return out.float()
            return self.generator(self.g_input).float()

    def optimize_parameters(self) -> dict[str, float]:
        """One GVS iteration (Step A + Step B) on the current batch; returns the losses as floats.

        With ``train.gate_fine_every`` = k, every k-th iteration keeps the batch's centre half and runs
        the coarse-scale gate at full resolution on it (the same compute): the gate also learns the
        scale at which small lesions are large enough to see, the scale of its second look.
        """
        if self.x_p is None:
            raise RuntimeError("set_input must be called before optimize_parameters")
        self.steps_done += 1
        every = self.train_cfg.gate_fine_every
        if every > 0 and self.steps_done % every == 0:
            self._keep_centre_half()
            with gate_at_full_resolution(self.generator):
                return self._iterate()
        return self._iterate()

    def _keep_centre_half(self) -> None:
        """Cut the current batch (every per-pixel tensor) to its centre half along H and W."""
        height, width = self.x_p.shape[-2:]
        cut = (..., slice(height // 4, height // 4 + height // 2), slice(width // 4, width // 4 + width // 2))
        self.g_input = self.g_input[cut]
        self.x_p = self.g_input[:, :1]
        self.lesion, self.region = self.lesion[cut], self.region[cut]
        self.healthy = self.healthy[cut] if self.healthy is not None else None

    def _iterate(self) -> dict[str, float]:
        self.generator.train()
        self.segmentor.train()
        if self.train_cfg.adversarial_weight == 0:
            # Supervised only: no game, no segmentor step (S stays at its initial weights).
            losses = self._step_b(self._generate())
            losses["loss_s"] = torch.zeros(())
        elif self.train_cfg.step_order == "gen-first":
            x_s = self._generate()
            losses = self._step_b(x_s)
            losses["loss_s"] = self._step_a(x_s)
        elif self.share_generator_forward:
            x_s = self._generate()  # with grad: Step A uses it detached, Step B backpropagates through it
            loss_s = self._step_a(x_s)
            losses = self._step_b(x_s)
            losses["loss_s"] = loss_s
        else:
            with torch.no_grad():
                x_fixed = self._generate()
            loss_s = self._step_a(x_fixed)
            losses = self._step_b(self._generate())
            losses["loss_s"] = loss_s
        # One host sync for all four numbers.
        keys = ("loss_s", "loss_g", "loss_adv", "loss_res", "loss_sup")
        values = torch.stack([losses[k].float() for k in keys]).tolist()
        return dict(zip(keys, values))

    # -- inference, schedule, state ------------------------------------------------------------
    def synthesize(self, x: torch.Tensor) -> torch.Tensor:
        """`x_s = G(x)` in eval mode without gradient: `(B, 1, H, W)` -> `(B, 1, H, W)` float32 on x's device."""
        return eval_forward(self.synthesis_generator(), x, self.device, self.amp)

    def synthesis_generator(self) -> nn.Module:
        """The network synthesis uses: the weights' moving average under ``train.ema_decay``, else G itself."""
        return self.generator_ema.module if self.generator_ema is not None else unwrap(self.generator)

    def step_schedulers(self) -> None:
        """Apply the poly decay after an epoch."""
        self.sched_g.step()
        self.sched_s.step()

    def set_learning_rate(self, lr: float) -> None:
        """Set both optimisers' learning rate (the time-budget schedule of the training loop)."""
        for optimiser in (self.opt_g, self.opt_s):
            for group in optimiser.param_groups:
                group["lr"] = lr

    def decay_learning_rates(self, done: float) -> None:
        """The loop's time-budget schedule: ``lr = base * (1 - done) ** poly_power``, ``done`` in [0, 1]."""
        self.set_learning_rate(self.train_cfg.lr * (1.0 - done) ** self.train_cfg.poly_power)

    def learning_rates(self) -> dict[str, float]:
        return {"lr_g": self.opt_g.param_groups[0]["lr"], "lr_s": self.opt_s.param_groups[0]["lr"]}

    def sync_buffers(self) -> None:
        """Under DDP give every rank rank 0's BatchNorm running statistics (each rank updates them from
        its own shard in Step B, which DDP does not synchronise)."""
        if self.distributed:
            import torch.distributed as dist

            for buffer in unwrap(self.segmentor).buffers():
                dist.broadcast(buffer, src=0)

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "segmentor": self.segmentor}

    def state_dict(self) -> dict[str, Any]:
        """Both nets (unwrapped), both optimisers and schedulers: tensors and plain values only."""
        return {
            "generator": unwrap(self.generator).state_dict(),
            "segmentor": unwrap(self.segmentor).state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_s": self.opt_s.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_s": self.sched_s.state_dict(),
            "steps_done": self.steps_done,
            **({"generator_ema": self.generator_ema.module.state_dict(),
                "ema_updates": int(self.generator_ema.n_averaged)} if self.generator_ema is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.segmentor).load_state_dict(state["segmentor"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_s.load_state_dict(state["opt_s"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_s.load_state_dict(state["sched_s"])
        self.steps_done = int(state.get("steps_done", 0))  # checkpoints before session 11 have none
        if self.generator_ema is not None:
            self.generator_ema.module.load_state_dict(state["generator_ema"])
            self.generator_ema.n_averaged.fill_(int(state["ema_updates"]))
