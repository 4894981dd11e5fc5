"""`import-reference`: the reference code's checkpoints run exactly in the `reference` preset."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pseudohealthy.config import resolve_run_config
from pseudohealthy.errors import UserError
from pseudohealthy.interop.reference_checkpoint import import_reference_checkpoint
from pseudohealthy.models import build_generator, build_segmentor, count_parameters, to_reference_layout
from pseudohealthy.training.checkpoint import load_generator, load_segmentor, read_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from reference_nets import RefGenerator, RefSegmenter, save_reference_checkpoint  # noqa: E402


def _conv_bias_count(module: torch.nn.Module, before: type) -> int:
    """Biases of convs directly followed by a ``before`` layer in a Sequential."""
    total = 0
    for seq in (m for m in module.modules() if isinstance(m, torch.nn.Sequential)):
        layers = list(seq)
        for layer, following in zip(layers, layers[1:]):
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and isinstance(following, before) \
                    and layer.bias is not None:
                total += layer.bias.numel()
    return total


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Full-size random reference networks, saved in the reference format and imported once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; these nets gain little from more at 32x48
    folder = tmp_path_factory.mktemp("reference")
    generator, segmenter = save_reference_checkpoint(folder / "ref.pth", seed=3)
    summary = import_reference_checkpoint(folder / "ref.pth", folder / "run")
    yield {"ref_g": generator, "ref_s": segmenter, "run": folder / "run", "file": folder / "ref.pth", "summary": summary}
    torch.set_num_threads(threads)


@pytest.mark.parametrize("override", ["model.slice_layout=sideways", "model.seg_decoder=wide"])
def test_unknown_layout_options_are_one_sentence(override):
    cfg = resolve_run_config(preset="reference", overrides=[override])
    with pytest.raises(UserError, match="is unknown; choose one of"):
        build_segmentor(cfg.model)


def test_reference_preset_parameter_counts_equal_the_reference_code():
    cfg = resolve_run_config(preset="reference").model
    ref_g, ref_s = RefGenerator(), RefSegmenter()
    ours_s = count_parameters(build_segmentor(cfg))
    assert ours_s == count_parameters(ref_s)
    assert 17.2e6 < ours_s < 17.35e6  # "17.3M parameters"
    # The generator is ours: the reference's conv biases before instance norm are the only difference.
    cancelled = _conv_bias_count(ref_g, torch.nn.InstanceNorm2d)
    assert cancelled == 64 + 128 + 256 + 9 * 2 * 256 + 128 + 64
    assert count_parameters(build_generator(cfg)) == count_parameters(ref_g) - cancelled


def test_existing_presets_keep_their_networks():
    """The paper preset's U-Net: full decoder, no biases before BatchNorm, bilinear without aligned corners."""
    cfg = resolve_run_config(preset="paper").model
    unet = build_segmentor(cfg)
    assert (cfg.seg_decoder, cfg.seg_align_corners, cfg.seg_conv_bias) == ("full", False, False)
    assert _conv_bias_count(unet, torch.nn.BatchNorm2d) == 0
    assert [b.body[3].out_channels for b in unet.up] == [512, 256, 128, 64]
    # widths 64-128-256-512-512: encoder, decoder and head weights plus BatchNorm affine pairs
    widths = [64, 128, 256, 512, 512]
    convs = [(1, 64), (64, 64)] + [(a, b) for w0, w1 in zip(widths, widths[1:]) for a, b in ((w0, w1), (w1, w1))]
    convs += [(a, b) for lvl in reversed(range(4)) for a, b in ((widths[lvl + 1] + widths[lvl], widths[lvl]), (widths[lvl], widths[lvl]))]
    expected = sum(9 * a * b + 2 * b for a, b in convs) + 64 * 2 + 2
    assert count_parameters(unet) == expected
    assert 19.5e6 < expected < 19.7e6


def test_imported_generator_equals_the_reference(imported):
    generator, _cfg, preprocess = load_generator(imported["run"])
    assert preprocess["normalization"] == "reference"
    x = torch.rand(3, 1, 48, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = generator(x)
        # the reference network sees the slice as the reference code read it (see models.SLICE_LAYOUTS)
        theirs = to_reference_layout(imported["ref_g"](to_reference_layout(x)))
        as_stored = imported["ref_g"](x)
    assert (ours - x).abs().max() > 0.05  # the random weights do change the image
    # The reference's conv biases before instance norm cancel in exact arithmetic, not in float32: the
    # two nets differ by rounding (1.1e-5 at most on one 2-core CPU, 2026-12-02, under 1e-5 on others:
    # the kernels differ between CPUs); a wrong weight or layout moves the output by more than 1e-2.
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-4)
    assert not torch.allclose(ours, as_stored, atol=1e-2)  # the layout matters to the network
    # the same weights without the layout hooks are the reference network itself
    plain = build_generator(dataclasses.replace(_cfg.model, slice_layout="canonical"))
    plain.load_state_dict(generator.state_dict())
    with torch.no_grad():
        assert torch.allclose(plain.eval()(x), as_stored, rtol=0, atol=1e-4)  # rounding only, as above


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_imported_segmentor_equals_the_reference(imported, mode):
    segmentor, cfg = load_segmentor(imported["run"])
    assert cfg.preset == "reference"
    x = torch.rand(2, 1, 48, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reference = imported["ref_s"]
    segmentor.train(mode == "train")
    reference.train(mode == "train")
    try:
        with torch.no_grad():
            ours, theirs = segmentor(x), to_reference_layout(reference(to_reference_layout(x)))
    finally:
        reference.eval()
    assert theirs.abs().max() > 0.1
    # The reference's conv biases before instance norm cancel in exact arithmetic, not in float32: the
    # two nets differ by rounding (1.1e-5 at most on one 2-core CPU, 2026-12-02, under 1e-5 on others:
    # the kernels differ between CPUs); a wrong weight or layout moves the output by more than 1e-2.
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-4)


def test_run_folder_describes_itself(imported):
    run = imported["run"]
    payload = read_checkpoint(run)
    assert payload["config"]["preset"] == "reference"
    assert payload["preprocess"]["normalization"] == "reference" and payload["preprocess"]["source"] == "brats"
    summary = json.loads((run / "import.json").read_text())
    assert summary["reference_epoch"] == 4 and summary["dropped_norm_cancelled_biases"] == 1 + 2 + 2 * 9 + 2
    assert (run / "config.yaml").is_file() and (run / "preprocess.json").is_file()


def test_import_refuses_an_existing_folder_without_overwrite(imported, cli):
    result = cli(["import-reference", "--checkpoint", imported["file"], "--output", imported["run"]])
    assert result.exit_code == 2 and "--overwrite" in result.output


def _save(path: Path, payload) -> Path:
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "payload,expected",
    [
        ([1, 2], "expected a dict"),
        ({"reconstucter": {}}, "missing key 'segmenter'"),
        ({"reconstucter": {"model.1.weight": torch.zeros(1)}, "segmenter": {"x": 3}}, "'segmenter' is not a state dict"),
    ],
)
def test_not_a_reference_checkpoint_is_refused(tmp_path, payload, expected):
    with pytest.raises(UserError, match=expected):
        import_reference_checkpoint(_save(tmp_path / "bad.pth", payload), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_other_networks_are_refused_naming_the_first_misfit(tmp_path):
    small = RefGenerator(ngf=8, n_blocks=2).state_dict()
    full_s = RefSegmenter(8).state_dict()
    path = _save(tmp_path / "small.pth", {"reconstucter": small, "segmenter": full_s})
    with pytest.raises(UserError, match=r"generator key 'model\.12\.weight' has no counterpart"):
        import_reference_checkpoint(path, tmp_path / "run")
    nine = RefGenerator(ngf=8, n_blocks=9).state_dict()
    path = _save(tmp_path / "narrow.pth", {"reconstucter": nine, "segmenter": full_s})
    with pytest.raises(UserError, match=r"generator key 'model\.1\.weight' has shape \[8, 1, 7, 7\], the reference networks need \[64, 1, 7, 7\]"):
        import_reference_checkpoint(path, tmp_path / "run")


@pytest.mark.parametrize("net,key", [("reconstucter", "model.10.conv_block.5.weight"), ("segmenter", "up3.conv.double_conv.1.running_mean"),
                                     ("segmenter", "outc.conv.bias")])
def test_a_missing_key_is_named_in_the_reference_spelling(tmp_path, net, key):
    payload = {"reconstucter": RefGenerator().state_dict(), "segmenter": RefSegmenter().state_dict()}
    del payload[net][key]
    with pytest.raises(UserError, match=f"lacks key '{key}'"):
        import_reference_checkpoint(_save(tmp_path / "one-short.pth", payload), tmp_path / "run")


def test_python_objects_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"reconstucter": {}, "segmenter": {}, "options": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(UserError, match=r"holds argparse\.Namespace, not only tensors"):
        import_reference_checkpoint(path, tmp_path / "run")


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        import_reference_checkpoint(path, tmp_path / "run")


def test_imported_run_synthesises_enhances_and_evaluates(imported, cli, tmp_path):
    """The CLI commands accept the imported run folder (tiny volumes, reference-size networks)."""
    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("_root_conftest_interop", root / "conftest.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    data = tmp_path / "data"
    case = helpers.write_tiny_brats_case(data, "Case000", shape=(32, 32, 6), seed=0)
    out = tmp_path / "synth"
    result = cli(["synthesize", "--checkpoint", imported["run"], "--input", case, "--output", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    import nibabel as nib

    written = nib.load(out / "Case000.nii.gz")
    source = nib.load(case / "Case000_t2.nii.gz")
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    assert np.abs(np.asarray(written.dataobj) - np.asarray(source.dataobj)).max() > 0
    result = cli(["enhance", "--checkpoint", imported["run"], "--input", case, "--output", tmp_path / "en",
                  "--alpha", "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = cli(["evaluate", "--data", data, "--method", "input=@original", "--segmentor", f"ref={imported['run']}",
                  "--output", tmp_path / "eval", "--adice-trials", "0", "--no-healthiness", "--working-size", "32",
                  "--figure-slices", "1"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["segmentors"]["ref"]["pooled"] <= 1.0 and metrics["segmentors"]["ref"]["n"] > 0
