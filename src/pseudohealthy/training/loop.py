"""The training loop of every registered method (GVS and the baselines), made of named hooks
(nnU-Net's `run_training` shape). The method object comes from the registry (`pseudohealthy.methods`).

    on_train_start                    run folder, data, model, resume state
    for each epoch:
        on_epoch_start(epoch)         sampler and augmentation seeded by (seed, epoch), progress bar
        train_step(batch)             one iteration of the method object (GVS: Step A + Step B)
        on_epoch_end(epoch)           lr step, losses.csv row, preview PNG, checkpoint
    on_train_end                      final log line; returns checkpoints/last.pt

A variant overrides a hook, not the loop. The run folder holds `config.yaml`, `preprocess.json`,
`losses.csv`, `previews/epoch-XXX.png`, `checkpoints/{last,epoch-XXX}.pt` and `train.log`.
Nothing finished is lost: a checkpoint is written atomically after every epoch (and the initial state
as epoch 0), Ctrl-C or SIGTERM leaves the last completed epoch on disk, and `resume=True` continues
after it with the same batches an uninterrupted run would have seen.
A time budget (`train.max_minutes`, on the wall clock or this process's CPU time) is checked before
each step: once spent, the epoch ends early, is saved like any other, and training stops.
"""
from __future__ import annotations

import csv
import json
import logging
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

import pseudohealthy
from pseudohealthy.config import RunConfig, to_dict, write_config
from pseudohealthy.errors import UserError
from pseudohealthy.models import count_parameters, gate_context, size_multiple
from pseudohealthy.training import distributed
from pseudohealthy.checkpoints import (
    FORMAT,
    FORMAT_VERSION,
    atomic_alias,
    atomic_save,
    read_checkpoint,
    rng_state,
    run_config_of,
    set_rng_state,
    unwrap,
)
from pseudohealthy.device import resolve_device
from pseudohealthy.methods import check_run_config, create_method, method_entry
from pseudohealthy.training.previews import save_preview

# Train settings that may differ on resume (where and how fast, and for how long, not what is learned).
RESUME_FREE_KEYS = {"device", "num_workers", "amp", "max_minutes"}


class TrainingInterrupted(UserError):
    """Ctrl-C or SIGTERM stopped training; the message says which epoch is saved and how to resume."""


class RunFolder:
    """Paths inside a training run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.preprocess = self.root / "preprocess.json"
        self.losses = self.root / "losses.csv"
        self.log = self.root / "train.log"
        self.previews = self.root / "previews"
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:03d}.pt"

    def preview(self, epoch: int) -> Path:
        return self.previews / f"epoch-{epoch:03d}.png"


def read_cache_preprocess(cache: Path) -> dict[str, Any]:
    """The `config` section of a slice cache's fingerprint (how its slices were made)."""
    from pseudohealthy.data.cache import read_fingerprint

    return dict(read_fingerprint(cache)["config"])


def training_intensity_stats(cache: Path, fraction: float, seed: int, max_slices: int = 2000) -> dict[str, float]:
    """Mean and std of the normalised foreground pixels (above the background value -1) of the
    training cases' slices, all of them, lesion or not; synthesis warns when an input is far from these."""
    from pseudohealthy.data.cache import open_array
    from pseudohealthy.data.dataset import SliceDataset

    rows = sorted(r.index for r in SliceDataset(cache, split="train", lesion_only=False, fraction=fraction, seed=seed).rows)
    if not rows:
        return {"region_mean": 0.0, "region_std": 0.0, "pixels": 0}
    picks = np.unique(np.linspace(0, len(rows) - 1, min(max_slices, len(rows))).round().astype(int))
    images = open_array(cache, "images")
    values = np.concatenate([np.asarray(images[rows[i]]).ravel() for i in picks]).astype(np.float64)
    values = values[values > -1.0 + 1e-6]
    if values.size == 0:
        return {"region_mean": 0.0, "region_std": 0.0, "pixels": 0}
    return {"region_mean": float(values.mean()), "region_std": float(values.std()), "pixels": int(values.size)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _config_differences(saved: RunConfig, wanted: RunConfig) -> list[str]:
    a, b = to_dict(saved), to_dict(wanted)
    diffs = ["method"] if a["method"] != b["method"] else []
    for section, values in a.items():
        if isinstance(values, dict):
            free = RESUME_FREE_KEYS if section == "train" else set()
            diffs += [f"{section}.{k}" for k in values if k not in free and values[k] != b[section].get(k)]
    return diffs


class GVSTrainer:
    """Train the run's method (GVS by default) on a slice cache into a run folder; see the module
    docstring for the hooks. (Named for the first method; every registered method trains here.)"""

    def __init__(self, run_config: RunConfig, output: str | Path, resume: bool = False, progress: bool = True) -> None:
        check_run_config(run_config)
        self.config = run_config
        self.folder = RunFolder(Path(output))
        self.resume = resume
        self.progress = progress
        self.dist = distributed.detect()
        self.log = logging.getLogger("pseudohealthy.train")
        self.start_epoch = 0  # epochs completed before this process started
        self.saved_epoch = -1  # the epoch whose state is on disk as last.pt
        self.state_epoch: int | None = None  # the epoch the in-memory state equals, None mid-epoch
        self.history: list[dict[str, Any]] = []
        self._bar = None
        self._log_handler: logging.Handler | None = None
        self.healthy = None  # lesion-free slices, for methods that need them
        # Time budget (train.max_minutes on train.budget_clock): seconds trained by earlier processes of
        # this run, and the clock of this one.
        self.elapsed_before = 0.0
        self.saved_elapsed = 0.0  # the clock stored in the newest checkpoint
        self.clock_start = self._clock()

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Run (or continue) training; returns the final checkpoint `checkpoints/last.pt`."""
        restore_sigterm = _sigterm_as_keyboard_interrupt()
        ended_normally = False
        try:
            self.on_train_start()
            for epoch in range(self.start_epoch + 1, self.config.train.epochs + 1):
                if self.budget_spent():
                    self.record_spent_budget()
                    break
                self.on_epoch_start(epoch)
                for batch in self.batches():
                    self.train_step(batch)
                self.on_epoch_end(epoch)
            if self.budget_spent():
                self.log.info("time budget of %g min (%s clock) spent; stopped after epoch %d", self.config.train.max_minutes,
                              self.config.train.budget_clock, self.saved_epoch)
            last = self.on_train_end()
            ended_normally = True
            return last
        except KeyboardInterrupt:
            raise self.on_interrupt() from None
        finally:
            restore_sigterm()
            self._close(wait_for_ranks=ended_normally)

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        t = self.config.train
        self.device = resolve_device(t.device, self.dist.local_rank)
        distributed.start(self.dist, self.device)
        cache = Path(self.config.data)
        self.preprocess = read_cache_preprocess(cache)
        payload = self._read_resume_checkpoint() if self.resume else None
        seed_everything(t.seed)
        self._open_data(cache)  # before writing anything, so that a bad cache leaves no run folder behind
        self.model = create_method(self.config, self.device, distributed=self.dist.enabled, healthy=self.healthy)
        self.loss_names = tuple(self.model.loss_names)
        self.csv_fields = ("epoch", "steps", *self.loss_names, *self.model.learning_rates(), "seconds")
        self._prepare_folder()
        if payload is not None:
            try:
                self.model.load_state_dict(payload)
            except KeyError as exc:
                raise UserError(f"{self.folder.last}: checkpoint lacks {exc.args[0]}; it cannot be resumed.") from None
            set_rng_state(payload["rng"])
            self.start_epoch = self.saved_epoch = self.state_epoch = int(payload["epoch"])
            self.history = [dict(row) for row in payload.get("history", [])][: self.start_epoch]
            self.elapsed_before = self.saved_elapsed = float(payload.get("elapsed_s", 0.0))
            self._rewrite_losses_csv()
        self._log_start()
        self.clock_start = self._clock()
        if payload is None:
            self.state_epoch = 0
            self._save_checkpoint(0)  # the initial state: a run stopped in epoch 1 can resume too

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self.state_epoch = None
        self.sampler.set_epoch(epoch)  # the shuffle is seeded by (seed, epoch): resume sees the same batches
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        if self.healthy is not None:
            self.healthy.set_epoch(epoch)  # the lesion-free draws of this epoch, the same after a resume
        self.steps = min(len(self.loader), self.config.train.max_steps_per_epoch or len(self.loader))
        self.sums = dict.fromkeys(self.loss_names, 0.0)
        self.done = 0
        self.images = 0
        self.epoch_start = time.perf_counter()
        if self.progress and self.dist.is_main:
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps, desc=f"epoch {epoch}/{self.config.train.epochs}", unit="step",
                             dynamic_ncols=True, leave=True)

    def batches(self) -> Iterator[Any]:
        for i, batch in enumerate(self.loader):
            if i >= self.steps:
                break
            elapsed = self.synced_elapsed()
            if self.budget_spent(elapsed):
                break
            self.apply_budget_schedule(elapsed)
            yield batch

    # -- time budget ----------------------------------------------------------------------------
    def _clock(self) -> float:
        """Now on the budget's clock: wall time, or this process's CPU time (fair on a shared machine)."""
        return time.process_time() if self.config.train.budget_clock == "cpu" else time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training in this run so far on the budget's clock, earlier processes included."""
        return self.elapsed_before + self._clock() - self.clock_start

    def synced_elapsed(self) -> float:
        """:meth:`elapsed` as rank 0 measures it, on every rank (collective: all ranks must call it)."""
        if self.config.train.max_minutes is None:
            return 0.0
        return distributed.from_rank0(self.elapsed(), self.dist, self.device)

    def budget_spent(self, elapsed: float | None = None) -> bool:
        """Whether the time budget is used up; collective under DDP unless ``elapsed`` is given."""
        minutes = self.config.train.max_minutes
        if minutes is None:
            return False
        return (self.synced_elapsed() if elapsed is None else elapsed) >= 60.0 * minutes

    def record_spent_budget(self) -> None:
        """The budget ran out right after a checkpoint that still had time left: save the same state
        again with the spent clock, so that resuming the run adds nothing."""
        if self.saved_elapsed < 60.0 * self.config.train.max_minutes and self.state_epoch == self.saved_epoch:
            self._save_checkpoint(self.saved_epoch)

    def apply_budget_schedule(self, elapsed: float) -> None:
        """Under a time budget the poly decay runs over the budget, step by step: ``lr = base *
        (1 - elapsed / budget) ** poly_power`` (instead of per epoch), so that a short budget still
        ends at a small learning rate."""
        t = self.config.train
        if t.max_minutes is None:
            return
        self.model.decay_learning_rates(min(elapsed / (60.0 * t.max_minutes), 1.0))

    def train_step(self, batch: Any) -> dict[str, float]:
        self.model.set_input(batch)
        losses = self.model.optimize_parameters()
        for k in self.loss_names:
            self.sums[k] += losses[k]
        self.done += 1
        self.images += int(batch[0].shape[0])
        if self._bar is not None:
            rate = self.images * self.dist.world_size / max(time.perf_counter() - self.epoch_start, 1e-9)
            shown = {k.removeprefix("loss_"): f"{losses[k]:.4g}" for k in self.loss_names}
            shown["img/s"] = f"{rate:.1f}"
            if self.config.train.max_minutes is not None:
                shown["left"] = f"{max(60.0 * self.config.train.max_minutes - self.elapsed(), 0.0) / 60.0:.1f}min"
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)
        return losses

    def on_epoch_end(self, epoch: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        means = distributed.mean_across_ranks([self.sums[k] / max(self.done, 1) for k in self.loss_names],
                                              self.dist, self.device)
        lrs = self.model.learning_rates()  # the rates this epoch trained with
        self.model.sync_buffers()
        if self.config.train.max_minutes is None:
            self.model.step_schedulers()
        self.state_epoch = epoch
        row = {"epoch": epoch, "steps": self.done, **dict(zip(self.loss_names, means)), **lrs,
               "seconds": round(time.perf_counter() - self.epoch_start, 3)}
        self.history.append(row)
        if self.dist.is_main:
            self._append_losses_row(row)
            self._write_preview(epoch)
        self._save_checkpoint(epoch)
        shown = ", ".join(f"{k.removeprefix('loss_')} {v:.5g}" for k, v in zip(self.loss_names, means))
        self.log.info("epoch %d/%d: %d steps, %s, lr %.2e, %.1f s", epoch, self.config.train.epochs, self.done, shown,
                      next(iter(lrs.values())), row["seconds"])

    def on_train_end(self) -> Path:
        distributed.write_test_hash(self.dist, *(unwrap(net) for net in self.model.networks().values()))
        self.log.info("done: %s", self.folder.last)
        return self.folder.last

    def on_interrupt(self) -> TrainingInterrupted:
        """Keep the last completed epoch on disk; returns the error that tells how to resume."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        state_epoch = self.state_epoch
        if state_epoch is not None and state_epoch > self.saved_epoch and hasattr(self, "model"):
            # Interrupted between the end of an epoch and its checkpoint: the state in memory is that
            # epoch's, so save it now.
            self._save_checkpoint(state_epoch)
        root = self.folder.root
        if self.saved_epoch < 0:
            if self.folder.last.is_file():
                return TrainingInterrupted(f"{root}: training interrupted while starting; continue with `pseudohealthy train --resume {root}`.")
            return TrainingInterrupted(f"{root}: training interrupted before anything was saved; start it again.")
        where = "during" if state_epoch is None else "after"
        return TrainingInterrupted(
            f"{root}: training interrupted {where} epoch {getattr(self, 'epoch', self.saved_epoch)}; "
            f"epoch {self.saved_epoch} is saved in {self.folder.last}, continue with `pseudohealthy train --resume {root}`."
        )

    # -- helpers --------------------------------------------------------------------------------
    def _read_resume_checkpoint(self) -> dict[str, Any]:
        if not self.folder.last.is_file():
            raise UserError(f"{self.folder.root}: nothing to resume (no checkpoints/last.pt); start a new run instead.")
        payload = read_checkpoint(self.folder.last, for_resume=True)
        saved = run_config_of(payload, self.folder.last)
        diffs = _config_differences(saved, self.config)
        if diffs:
            raise UserError(f"{self.folder.last}: cannot resume with a different {', '.join(diffs)}; "
                            "resume with the run's own config.yaml.")
        return payload

    def _prepare_folder(self) -> None:
        if not self.dist.is_main:
            return
        self.folder.checkpoints.mkdir(parents=True, exist_ok=True)
        self.folder.previews.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            # A fresh run replaces the files a run writes (the CLI asked for --overwrite already).
            for stale in [*self.folder.checkpoints.glob("*.pt"), *self.folder.previews.glob("epoch-*.png"),
                          self.folder.losses, self.folder.log]:
                stale.unlink(missing_ok=True)
            write_config(self.config, self.folder.config)
            self.folder.preprocess.write_text(json.dumps(self.preprocess, indent=2) + "\n")
            self._rewrite_losses_csv()
        self._log_handler = logging.FileHandler(self.folder.log)
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.log.addHandler(self._log_handler)
        self.log.setLevel(logging.INFO)

    def _open_data(self, cache: Path) -> None:
        from torch.utils.data import DataLoader, DistributedSampler

        from pseudohealthy.data.dataset import SliceDataset

        t, m = self.config.train, self.config.model
        self.dataset = SliceDataset(cache, split="train", lesion_only=t.lesion_only, fraction=t.train_fraction,
                                    seed=t.seed, augment=t.augment, crop_size=t.crop_size,
                                    lesion_crop_probability=t.lesion_crop_probability,
                                    with_healthy=t.supervised_weight > 0 or t.fill_weight > 0, intensity_augment=t.intensity_augment,
                                    intensity_curve=t.intensity_curve, augment_scale=t.augment_scale,
                                    augment_elastic=t.augment_elastic,
                                    online_lesions=t.online_lesions, online_max_lesions=t.online_max_lesions,
                                    mirror=m.gen_gate and m.gen_arch == "unet" and m.gen_gate_mirror,
                                    context=gate_context(m))
        if len(self.dataset) == 0:
            raise UserError(f"{cache}: no training slices (split train, lesion_only={t.lesion_only}, "
                            f"train_fraction={t.train_fraction}).")
        height, width = self.dataset[0][0].shape[-2:]
        multiple = size_multiple(self.config.model)
        if height % multiple or width % multiple:
            what = "train.crop_size" if t.crop_size else "preprocess with a working size that is"
            raise UserError(f"{cache}: slices are {height}x{width}, but these networks need multiples of {multiple}; "
                            f"{'choose a ' + what + ' that is' if t.crop_size else what}.")
        # DistributedSampler with one replica is a plain seeded shuffle; its seed is seed + epoch.
        self.sampler = DistributedSampler(self.dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=t.seed)
        self.loader = DataLoader(self.dataset, batch_size=t.batch_size, sampler=self.sampler,
                                 num_workers=t.num_workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=t.num_workers > 0)
        if method_entry(self.config.method).needs_healthy:
            from pseudohealthy.data.healthy import HealthyPool

            self.healthy = HealthyPool(cache, fraction=t.train_fraction, seed=t.seed)
        self.preview_batch = self._preview_slices(cache) if self.dist.is_main else None
        self.intensity_stats = training_intensity_stats(cache, t.train_fraction, t.seed) if self.dist.is_main else None

    def _preview_slices(self, cache: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
        """A few fixed lesion slices: from the test split, else the training split."""
        from pseudohealthy.data.dataset import SliceDataset

        source, name = SliceDataset(cache, split="test", lesion_only=True, context=gate_context(self.config.model)), "test"
        if len(source) == 0:
            source, name = self.dataset, "train"
        count = min(self.config.train.preview_slices, len(source))
        picks = np.unique(np.linspace(0, len(source) - 1, max(count, 1)).round().astype(int))
        items = [source[int(i)] for i in picks]
        images = torch.stack([torch.as_tensor(it[0]) for it in items])
        lesions = torch.stack([torch.as_tensor(it[1]) for it in items])
        return images, lesions, name

    def _write_preview(self, epoch: int) -> None:
        if not self.config.train.preview_slices or self.preview_batch is None:
            return
        images, lesions, name = self.preview_batch
        outputs = self.model.synthesize(images)
        save_preview(self.folder.preview(epoch), images[:, 0].numpy(), outputs[:, 0].cpu().numpy(),
                     lesions[:, 0].numpy(), title=f"epoch {epoch}, {name} slices")

    def _save_checkpoint(self, epoch: int) -> None:
        if self.dist.is_main:
            state = self.model.state_dict()
            payload = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "version": pseudohealthy.__version__,
                "method": self.config.method,
                "epoch": epoch,
                **state,
                "state_keys": list(state),
                "rng": rng_state(),
                "config": to_dict(self.config),
                "preprocess": self.preprocess,
                "intensity_stats": self.intensity_stats,
                "history": [dict(row) for row in self.history],
                "elapsed_s": self.elapsed() if epoch > 0 else 0.0,
            }
            self.saved_elapsed = payload["elapsed_s"]
            if epoch == 0:
                atomic_save(payload, self.folder.last)
            else:
                path = atomic_save(payload, self.folder.epoch_checkpoint(epoch))
                atomic_alias(path, self.folder.last)
                keep = self.config.train.keep_checkpoints
                if keep > 0:  # a paper-preset checkpoint is ~370 MB: let long runs keep only the newest
                    for old in range(1, epoch - keep + 1):
                        self.folder.epoch_checkpoint(old).unlink(missing_ok=True)
        self.saved_epoch = epoch

    def _rewrite_losses_csv(self) -> None:
        """Header plus the rows of the epochs saved so far (after a kill, later rows are dropped)."""
        if not self.dist.is_main:
            return
        with open(self.folder.losses, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.csv_fields)
            writer.writeheader()
            writer.writerows(self.history)

    def _append_losses_row(self, row: dict[str, Any]) -> None:
        with open(self.folder.losses, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.csv_fields).writerow(row)

    def _log_start(self) -> None:
        t = self.config.train
        self.log.info("pseudohealthy %s, %s %s run in %s", pseudohealthy.__version__,
                      "resumed" if self.resume else "new", self.config.method, self.folder.root)
        sizes = ", ".join(f"{name} {count_parameters(unwrap(net)):,} parameters" for name, net in self.model.networks().items())
        self.log.info("preset %s: %s", self.config.preset, sizes)
        if self.healthy is not None:
            self.log.info("%d lesion-free training slices to train against", len(self.healthy))
        self.log.info("device %s%s, amp %s; %d training slices, %d steps per epoch of batch %d",
                      self.device, f", {self.dist.world_size} processes" if self.dist.enabled else "",
                      t.amp and self.device.type == "cuda", len(self.dataset),
                      min(len(self.loader), t.max_steps_per_epoch or len(self.loader)), t.batch_size)
        if self.resume:
            self.log.info("continuing after epoch %d of %d", self.start_epoch, t.epochs)

    def _close(self, wait_for_ranks: bool = False) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._log_handler is not None:
            self.log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        distributed.stop(wait=wait_for_ranks, release=self._release_networks)

    def _release_networks(self) -> None:
        """Drop the trainer's references to the (DDP-wrapped) nets and the loader; the run is over."""
        self.model = None
        self.loader = None


def _sigterm_as_keyboard_interrupt():
    """Treat SIGTERM like Ctrl-C while training (main thread only); returns the restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def train(run_config: RunConfig, output: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train GVS on ``run_config.data`` into the run folder ``output``; returns the final checkpoint.

    ``resume``: continue the run in ``output`` after its last completed epoch (``run_config`` must be
    the run's own config, device and worker count aside). Raises :class:`TrainingInterrupted` on
    Ctrl-C / SIGTERM after keeping the last completed epoch on disk. A fresh run replaces the run
    files already in ``output``: refusing an existing folder (``--overwrite``) is the caller's job.
    """
    return GVSTrainer(run_config, output, resume=resume, progress=progress).fit()
