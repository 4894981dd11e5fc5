"""The GVS generator: a CycleGAN-style ResNet encoder-decoder with a global residual (SPEC section 2).

`G(x) = tanh(net(x)) + x`: the network predicts a bounded correction that is added to the input, so
an untrained (or zero) correction leaves the image unchanged and identity is the easy default.
The baselines reuse the same encoder-decoder with another output form (``output``):
``residual`` (GVS) `tanh(net(x)) + x`; ``additive`` (VA-GAN) `net(x) + x`, an unbounded map;
``image`` (PHS-GAN, CycleGAN) `tanh(net(x))`; ``shortcut`` (ANT-GAN) `tanh(net(x) + x)`.
"""
from __future__ import annotations

import torch
from torch import nn

from pseudohealthy.mirror import mirror as mirror_image
from pseudohealthy.models.blocks import ResidualBlock, conv_bias, init_normal, init_without_norm, norm_layer
from pseudohealthy.models.pyramid_fill import pyramid_fill
from pseudohealthy.sections import section_sizes


GATE_CORRECTION_RANGE = 2.0
# gate_fill: a pixel with gate m counts as known to the fill with weight (1 - m) ** FILL_TRUST_POWER,
# so a half-open gate (m = 0.5) already lends the fill only 1/16 of its value.
FILL_TRUST_POWER = 4
# gate_fill: background (the organ's outside, -1 after preprocessing) is no source for the fill; the
# trust ramps from 0 at -1 to 1 at -1 + BACKGROUND_RAMP.
BACKGROUND_RAMP = 0.02

OUTPUTS = ("residual", "additive", "image", "shortcut")
# the gate logit given to the pixels a second look opens (sigmoid ~ 1 - 2e-9)
SECOND_LOOK_LOGIT = 20.0


class ResnetGenerator(nn.Module):
    """`(B, 1, H, W)` float32 in [-1, 1] -> `(B, 1, H, W)` = input + tanh correction (so in [-2, 2]).

    H and W must be divisible by `2 ** downsamplings`. ``norm``: ``instance`` (paper) or ``none``;
    ``zero_init``: the correction's part of the last conv starts at zero, so the untrained G is exactly
    the identity (a gated G: up to where its random initial gate opens a fill).
    ``gate``: the last conv gives a second map, the logit of a gate ``m`` in (0, 1), and
    ``G(x) = x + m * 2 tanh(a)``: the network says *where* to change the image (``m``, trainable
    against lesion masks as a segmentation) apart from *what* to put there (``2 tanh(a)``; the factor
    2 lets a bright lesion at +1 become dark tissue at -1 on the [-1, 1] scale), so tissue it leaves
    alone stays the input up to ``m``, which a sigmoid drives to ~0 there.
    ``gate_fill`` (with ``gate``): what goes where the gate opens starts from a classical fill, not from
    the lesion: ``G(x) = x + m * (fill(x; 1 - m) + tanh(a) - x)``, ``fill`` = models/pyramid_fill.py
    from the pixels the gate keeps and ``tanh(a)`` a learned refinement (zero at start). The lesion's
    own intensities never reach the filled pixels except through the refinement, so an accurate gate
    alone already gives a fill as good as the classical yardsticks on unseen lesions.
    """

    def __init__(self, channels: int = 64, blocks: int = 9, downsamplings: int = 2, in_channels: int = 1,
                 norm: str = "instance", zero_init: bool = False, gate: bool = False, output: str = "residual",
                 out_channels: int | None = None, gate_fill: bool = False) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r} is unknown; choose one of {', '.join(OUTPUTS)}")
        out_channels = in_channels if out_channels is None else out_channels
        if output != "image" and out_channels != in_channels:
            raise ValueError("an output added to the input needs as many output channels as input channels")
        if gate and output != "residual":
            raise ValueError("only the residual output form has a gate")
        if gate_fill and not gate:
            raise ValueError("gate_fill needs the gate")
        bias = conv_bias(norm)
        self.gate = gate
        self.gate_fill = gate_fill
        self.downsamplings = downsamplings
        self.output = output
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, channels, 7, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(inplace=True),
        ]
        width = channels
        for _ in range(downsamplings):
            layers += [
                nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, width * 2),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResidualBlock(width, norm) for _ in range(blocks)]
        for _ in range(downsamplings):
            # output_padding=1 makes each transposed conv exactly double H and W.
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 2 * out_channels if gate else out_channels, 7)]
        if not gate:
            # additive and shortcut apply no tanh inside the net (Identity keeps the layer indices).
            layers.append(nn.Tanh() if output in ("residual", "image") else nn.Identity())
        self.net = nn.Sequential(*layers)
        if norm == "instance":
            init_normal(self)
        else:
            init_without_norm(self)
        if zero_init:
            # Only the correction starts at zero (the untrained G adds nothing). The gate's logits keep
            # their random weights: a zero gate head would pass no gradient to the body (the gradient
            # into the features is the head's weight), and the gate would learn at a crawl.
            zero_correction(self.last_conv, out_channels)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The final 7x7 conv (zeroing it makes G the identity)."""
        return self.net[-1] if self.gate else self.net[-2]

    def forward(self, x: torch.Tensor, return_gate: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``G(x)``; with ``return_gate`` also the gate's logits ``(B, 1, H, W)`` (None without a gate)."""
        if not self.gate:
            if self.output == "image":
                out = self.net(x)
            elif self.output == "shortcut":
                out = torch.tanh(self.net(x) + x)
            else:
                out = self.net(x) + x
            return (out, None) if return_gate else out
        correction, gate_logit = self.net(x).chunk(2, dim=1)
        out = gated_output(x, correction, gate_logit, self.gate_fill)
        return (out, gate_logit) if return_gate else out


def zero_correction(head: nn.Conv2d, correction_channels: int) -> None:
    """Zero the weights and biases of the first ``correction_channels`` outputs of ``head`` (the
    correction); the other outputs (a gate's logits) keep their initialisation, and their bias starts
    at zero."""
    with torch.no_grad():
        head.weight[:correction_channels].zero_()
        head.bias.zero_()


def hard_gate(gate: torch.Tensor) -> torch.Tensor:
    """The gate thresholded at 0.5 and dilated by one pixel (3x3), with the straight-through gradient
    of the soft gate (forward: the hard gate; backward: as if it were ``gate``). The dilation lets the
    fill take its boundary values one pixel beyond the gate's edge, where the lesion's partial
    volume has faded."""
    hard = (gate > 0.5).to(gate.dtype)
    return dilate_one_pixel(hard + gate - gate.detach())


def dilate_one_pixel(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` ``(B, 1, H, W)`` grown by one pixel (3x3 maximum): the hard gate's dilation, which the
    learned fill's training hole copies."""
    return nn.functional.max_pool2d(mask, 3, stride=1, padding=1)


def fill_trust(gate: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """How far the fill trusts each pixel of ``x`` beside a gate ``m``: ``(1 - m)^4``, ramping to 0 on
    the background."""
    return (1.0 - gate) ** FILL_TRUST_POWER * ((x + 1.0) / BACKGROUND_RAMP).clamp(0.0, 1.0)


def gated_output(x: torch.Tensor, correction: torch.Tensor, gate_logit: torch.Tensor, fill: bool,
                 hard: bool = False, refine: bool = True, gate_from_masks: bool = False,
                 learned_fill: nn.Module | None = None) -> torch.Tensor:
    """A gated generator's output from its two maps: ``x + m * 2 tanh(a)``, or with ``fill``
    ``x + m * (pyramid_fill(x; (1 - m)^4 outside the background) + tanh(a) - x)``; ``hard`` uses
    :func:`hard_gate` for ``m`` (pixels outside it are the input, bit for bit); ``refine=False``
    drops ``tanh(a)`` (the fill alone); ``gate_from_masks``: the output passes no gradient to the gate
    (it learns from its own loss against the lesion masks only, losses/gate.py); ``learned_fill``
    (models/learned_fill.py) corrects the fill under the gate, seeing the filled slice and the gate."""
    gate = torch.sigmoid(gate_logit.detach() if gate_from_masks else gate_logit)
    if not fill:
        return x + gate * (GATE_CORRECTION_RANGE * torch.tanh(correction))
    # The fill trusts pixels by the soft gate also under a hard gate: a fill from a closed gate would
    # be the input itself, and the straight-through gradient would never say that opening helps.
    trust = fill_trust(gate, x)
    if hard:
        gate = hard_gate(gate)
    refinement = torch.tanh(correction) if refine else 0.0
    filled = pyramid_fill(x.float(), trust.float()).to(x.dtype)
    if learned_fill is not None:
        hole = gate.detach()
        filled = learned_fill(x + hole * (filled - x), hole, x)
    return x + gate * (filled + refinement - x)


def teaching_hole(lesion: torch.Tensor, gate_logit: torch.Tensor, with_gate: bool) -> torch.Tensor:
    """The mask the learned fill is taught in (``train.fill_weight``): the true lesion masks, and with
    ``with_gate`` (``train.fill_on_gate``) also where the gate opens (its undilated hard mask), so that
    the fill also learns to give back the normal tissue a gate opens on by mistake."""
    if not with_gate:
        return lesion
    return torch.maximum(lesion, (gate_logit.detach() > 0).to(lesion.dtype))


def fill_true_hole(x: torch.Tensor, lesion: torch.Tensor, learned_fill: nn.Module) -> torch.Tensor:
    """``learned_fill``'s output for the true lesion mask as the gate (training, ``train.fill_weight``):
    the hole is the mask dilated a pixel, as :func:`hard_gate` dilates the gate, and the pull-push fill
    under it trusts every pixel outside the undilated mask, as it trusts a closed soft gate."""
    hole = dilate_one_pixel(lesion)
    filled = pyramid_fill(x.float(), fill_trust(lesion, x).float()).to(x.dtype)
    return learned_fill(x + hole * (filled - x), hole, x)


class GatedUNetGenerator(nn.Module):
    """A gated generator on the U-Net of the segmentor (``model.gen_arch=unet``): the U-Net's two output
    maps are the correction ``a`` and the gate's logit, combined as in :func:`gated_output`.

    The gate is a segmentation, and the U-Net's skip connections segment better than the ResNet
    encoder-decoder at the same budget (docs/quality.md). The correction map starts at zero.
    ``scale`` > 1: the U-Net sees the slice shrunk by this factor (area average) and its two maps are
    brought back to the slice's size bilinearly; the fill and the output stay at full resolution. A
    segmentation needs context more than it needs every pixel: at scale 2 a 64-pixel training crop
    of the net covers 128 pixels of the slice, for a quarter of the compute (docs/quality.md).
    ``shuffle``: the shrink is space-to-depth instead (each ``scale x scale`` cell's pixels become the
    net's ``scale**2`` input channels; ``pixel_unshuffle``) and the maps come back by depth-to-space
    (``pixel_shuffle`` of ``2 * scale**2`` output channels): the same compute at the half resolution,
    but no pixel is averaged away on the way in (small lesions) and the gate is drawn at full
    resolution on the way out (as the sub-pixel convolution of super-resolution networks, ESPCN).
    The slice is padded with background to a multiple of ``scale`` and cut back.
    ``second_look`` > 0 (``scale`` > 1, inference only): the U-Net also looks at the slice at full
    resolution, where a lesion appears ``scale`` times larger than in training; the connected parts
    of that look above this probability and smaller than ``second_look_area`` pixels join the gate.
    Small lesions, a few pixels across at the training scale, are what the coarse gate misses most;
    large ones it finds, and a full-resolution view of them sees too little context (measured on
    fresh lesions pasted into the training and an unseen subject; docs/quality.md, session 10).
    ``mirror``: the U-Net's input is the slice and its mirror image about the slice's own midline
    (``pseudohealthy/mirror.py``), so the gate can compare each place with the other hemisphere. A
    one-channel input gets its mirror here (a whole slice, at inference); a two-channel input brings
    it (training crops, cut from the mirror of the whole slice by the data set). The output has one
    channel, the slice's.
    ``learned_fill`` (models/learned_fill.py): an inpainting network that corrects the fill under the
    hard gate, from the filled slice and the gate only (``model.gen_fill_net``).
    ``context`` = k > 0: the U-Net also sees the ``k`` slices below and above (2.5-D; a lesion is a
    blob in 3-D, while vessels, sulci and ventricles run on through the neighbours). The input is then
    ``(B, 1 + 2k, H, W)``: the slice first, its neighbours z-k..z-1, z+1..z+k after it
    (``inference.synthesize.with_neighbours`` builds it from a volume); the output is the slice's.
    ``adapt_steps``, ``adapt_keep``, ``adapt_growth``, ``fill_volume`` and ``fill_pull`` are read by synthesis, not by :meth:`forward`:
    the gate adapts to each volume first (inference/adapt.py), and the fill under the gate is taken
    from the whole volume (inference/volume_fill.py, from :meth:`gate_maps`).
    """

    def __init__(self, unet: nn.Module, fill: bool = True, hard: bool = False, refine: bool = True, scale: int = 1,
                 gate_from_masks: bool = False, shuffle: bool = False, second_look: float = 0.0,
                 second_look_area: int = 400, mirror: bool = False, context: int = 0,
                 learned_fill: nn.Module | None = None, adapt_steps: int = 0, adapt_keep: float = 0.0,
                 fill_volume: bool = False, adapt_growth: float = 0.0, fill_pull: str = "mean") -> None:
        super().__init__()
        if learned_fill is not None and not fill:
            raise ValueError("a learned fill corrects the gate's fill: it needs fill=True")
        self.learned_fill = learned_fill
        if scale < 1:
            raise ValueError(f"the gate's scale must be a positive integer, not {scale}")
        self.net = unet
        self.gate = True
        self.gate_fill = fill
        self.gate_hard = hard
        self.gate_refine = refine
        self.scale = int(scale)
        self.gate_from_masks = gate_from_masks
        self.shuffle = bool(shuffle) and self.scale > 1
        self.second_look = float(second_look) if self.scale > 1 else 0.0
        self.second_look_area = int(second_look_area)
        self.mirror = bool(mirror)
        self.context = int(context)
        self.adapt_steps = int(adapt_steps)  # read by synthesis (inference/adapt.py), not by forward
        self.adapt_keep = float(adapt_keep)  # likewise (inference/adapt.py keep_survivors)
        self.adapt_growth = float(adapt_growth)  # likewise (inference/adapt.py grow_components)
        self.fill_volume = bool(fill_volume)  # read by synthesis (inference/volume_fill.py), not by forward
        self.fill_pull = str(fill_pull)  # likewise: the 3-D fill's pooling, mean | median
        # pixel_shuffle reads output channel c from the net's channels c * scale**2 ..: the first
        # scale**2 are the correction's
        zero_correction(unet.head, self.scale ** 2 if self.shuffle else 1)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The correction ``a`` and the gate's logits, both ``(B, 1, H, W)`` at ``x``'s size."""
        if self.scale == 1:
            return self.net(x).chunk(2, dim=1)
        if self.shuffle:
            height, width = x.shape[-2:]
            padded = nn.functional.pad(x, (0, (-width) % self.scale, 0, (-height) % self.scale), value=-1.0)
            cells = nn.functional.pixel_unshuffle(padded, self.scale)
            maps = nn.functional.pixel_shuffle(self.net(cells), self.scale)[..., :height, :width]
            return maps.chunk(2, dim=1)
        small = nn.functional.interpolate(x, scale_factor=1.0 / self.scale, mode="area")
        maps = nn.functional.interpolate(self.net(small), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return maps.chunk(2, dim=1)

    @torch.no_grad()
    def _second_look(self, x: torch.Tensor, gate_logit: torch.Tensor) -> torch.Tensor:
        """``gate_logit`` with the small parts found at full resolution set open."""
        fine = (torch.sigmoid(self.net(x)[:, 1:2].float()) > self.second_look).cpu().numpy()
        sizes = section_sizes(fine, diagonal=False)  # 4-connected parts, per slice, on the CPU
        add = (sizes > 0) & (sizes < self.second_look_area)
        opened = torch.as_tensor(add, device=gate_logit.device)
        return torch.where(opened, gate_logit.new_tensor(SECOND_LOOK_LOGIT).maximum(gate_logit), gate_logit)

    def net_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(slice, what the U-Net sees)``: the slice alone, or with ``mirror`` the slice and its mirror image,
        or with ``context`` the slice and its neighbours (which the input must bring)."""
        if self.context:
            if x.shape[1] != 1 + 2 * self.context:
                raise ValueError(f"this generator sees {self.context} neighbouring slice(s) on each side: its input needs "
                                 f"{1 + 2 * self.context} channels (the slice, then its neighbours), not {x.shape[1]}")
            return x[:, :1], x
        if not self.mirror:
            return x, x
        if x.shape[1] == 2:
            return x[:, :1], x
        return x, torch.cat([x, mirror_image(x)], dim=1)

    def gate_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(slice, correction a, gate logits)``, each ``(B, 1, H, W)``, as :meth:`forward` combines them (the
        second look included at inference); synthesis uses them to fill from the whole volume
        (inference/volume_fill.py)."""
        x, seen = self.net_input(x)
        correction, gate_logit = self.maps(seen)
        if self.second_look > 0 and not self.training:
            gate_logit = self._second_look(seen, gate_logit)
        return x, correction, gate_logit

    def forward(self, x: torch.Tensor, return_gate: bool = False, hole: torch.Tensor | None = None,
                hole_with_gate: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """``G(x)``; with ``return_gate`` also the gate's logits; with ``hole`` (the true lesion masks
        ``(B, 1, H, W)``, training) also the learned fill of that hole (:func:`fill_true_hole`), computed
        in this forward so that DistributedDataParallel sees every parameter used; ``hole_with_gate``
        adds where the gate opens (:func:`teaching_hole`, ``train.fill_on_gate``)."""
        x, correction, gate_logit = self.gate_maps(x)
        out = gated_output(x, correction, gate_logit, self.gate_fill, self.gate_hard, self.gate_refine, self.gate_from_masks,
                           self.learned_fill)
        if hole is not None:
            if self.learned_fill is None:
                raise ValueError("this generator has no learned fill to teach (model.gen_fill_net=false)")
            return out, gate_logit, fill_true_hole(x, teaching_hole(hole, gate_logit, hole_with_gate), self.learned_fill)
        return (out, gate_logit) if return_gate else out
