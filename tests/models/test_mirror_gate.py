"""The mirror gate (``model.gen_gate_mirror``): the midline search, the reflection and the generator's
two ways of getting the mirror (brought by a training crop, made from a whole slice at inference).
The data set's mirror channel: tests/data/test_dataset.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.mirror import midline, mirror, reflect, reflect_slice, slice_midline
from pseudohealthy.models import build_generator

TINY_MIRROR = ["model.seg_base=8", "model.seg_depth=2", "model.seg_max_channels=16", "model.gen_gate_mirror=true"]


def _brain(height: int = 64, width: int = 48, centre: float = 30.5) -> np.ndarray:
    """An ellipse symmetric about row ``centre`` (background -1), with a left-right symmetric texture."""
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    inside = ((rows - centre) / 20.0) ** 2 + ((cols - width / 2) / 18.0) ** 2 < 1
    texture = 0.3 * np.cos(np.abs(rows - centre) / 2.0) * np.sin(cols / 3.0)
    return np.where(inside, -0.2 + texture, -1.0).astype(np.float32)


@pytest.mark.parametrize("centre", [30.5, 27.0, 36.5])
def test_the_midline_of_a_symmetric_slice_is_found_wherever_it_lies(centre):
    image = _brain(centre=centre)
    assert slice_midline(image) == int(2 * centre)
    np.testing.assert_array_equal(reflect_slice(image, slice_midline(image)), image)


def test_a_one_sided_lesion_does_not_move_the_midline_and_shows_up_on_the_other_side_only_in_the_mirror():
    image = _brain(centre=30.5)
    image[40:46, 20:26] = 0.9  # a bright lesion right of the midline (rows 40-45: mirrored to 21-16)
    t = slice_midline(image)
    assert t == 61
    mirrored = reflect_slice(image, t)
    assert (mirrored[16:22, 20:26] == 0.9).all() and (mirrored[40:46, 20:26] < 0.9).all()
    assert np.abs(image - mirrored)[image > -1].max() > 1.0  # the lesion is the largest left-right difference


def test_rows_mirrored_from_outside_the_slice_are_background_and_blank_slices_use_the_grid_centre():
    x = torch.rand(2, 1, 10, 4) * 2 - 1
    out = reflect(x, torch.tensor([5, 12]))
    torch.testing.assert_close(out[0, 0, :6], x[0, 0, :6].flip(0))  # rows 0..5 <- 5..0
    assert (out[0, 0, 6:] == -1).all()  # rows 6..9 would come from -1..-4
    assert (out[1, 0, :3] == -1).all()  # rows 0..2 would come from 12..10
    torch.testing.assert_close(out[1, 0, 3:], x[1, 0, 3:].flip(0))
    assert midline(torch.full((1, 1, 10, 4), -1.0)).item() == 9


def test_the_generator_mirrors_a_whole_slice_itself_and_takes_a_crops_mirror_as_given():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_MIRROR).model
    generator = build_generator(cfg).eval()
    first_conv = next(m for m in generator.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 2
    x = torch.from_numpy(_brain(height=64, width=64, centre=33.0))[None, None]
    x[..., 40:46, 20:26] = 0.9
    with torch.no_grad():
        own = generator(x, return_gate=True)
        given = generator(torch.cat([x, mirror(x)], dim=1), return_gate=True)
        other = generator(torch.cat([x, x], dim=1), return_gate=True)
    assert own[0].shape == (1, 1, 64, 64)
    torch.testing.assert_close(own[1], given[1])
    assert not torch.allclose(own[1], other[1])  # the second channel is really seen


def test_a_mirror_gate_with_the_space_to_depth_shrink_is_refused():
    cfg = resolve_run_config(preset="hybrid", overrides=TINY_MIRROR + ["model.gen_gate_second_look=0", "model.gen_gate_shuffle=true"]).model
    with pytest.raises(UserError, match="gen_gate_mirror"):
        build_generator(cfg)
