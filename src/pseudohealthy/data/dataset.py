"""A PyTorch ``Dataset`` over the slice cache written by ``pseudohealthy preprocess``.

Items are ``(image, lesion, region, case_id, slice_index)``: ``image`` float32 ``(1, H, W)`` in
[-1, 1], ``lesion`` and ``region`` float32 ``(1, H, W)`` in {0, 1}, ``case_id`` str, ``slice_index``
the canonical z of the slice. ``with_healthy=True`` appends the true healthy slice ``(1, H, W)``
(NaN where the truth is unknown, such as inside a real scan's own lesion). ``crop_size`` cuts a
seeded random square out of every slice (centred near a lesion pixel with ``lesion_crop_probability``,
else anywhere in the region), so that networks train at the data's native resolution at the cost of
a small patch; a crop larger than the slice is cut to the slice's smaller side. ``intensity_augment``
applies a seeded random gamma and contrast (``augment.py``) to the image and its truth alike;
``online_lesions`` pastes fresh synthetic lesions into that share of the crops (``online_lesions.py``);
``mirror`` makes ``image`` ``(2, H, W)``: the slice and its mirror image about the whole slice's midline
(``pseudohealthy/mirror.py``, for ``model.gen_gate_mirror``), augmented and cut alike. ``context`` = k
makes it ``(1 + 2k, H, W)``: the slice, then the same case's slices z-k..z-1, z+1..z+k (for
``model.gen_gate_context``; background where the cache holds no such slice), warped, cut and
intensity-mapped alike, with online lesions pasted as 3-D lesions through all of them; the lesion
mask stays the slice's. With ``augment`` the neighbours' order is reversed for half the items (a
head seen from its feet). Arrays are memory-mapped and opened lazily in each process, so a data
loader's workers share the page cache instead of copying the arrays.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pseudohealthy.data.augment import (AugmentParams, apply_augmentation, apply_intensity, augmentation_rng, flip_slice,
                                         sample_augmentation, sample_intensity, warped_position)
from pseudohealthy.data.cache import open_array, read_fingerprint, read_slice_table
from pseudohealthy.data.online_lesions import organ_of_source, paste_lesions
from pseudohealthy.data.phantom.inserted_model import default_model
from pseudohealthy.data.splits import read_splits, subset_cases
from pseudohealthy.errors import UserError
from pseudohealthy.mirror import reflect_slice, slice_midline

SPLITS = ("train", "test", "all")
# the mirror channel's own jitter (``_jitter_mirror``): rotation (degrees), zoom, gamma and contrast ranges
MIRROR_MAX_ANGLE = 4.0
MIRROR_MAX_SCALE = 0.05
MIRROR_GAMMA = (0.85, 1.18)
MIRROR_CONTRAST = (0.93, 1.07)


def neighbour_offsets(context: int) -> list[int]:
    """The z offsets of a slice's ``context`` neighbours on each side, in channel order: -k..-1, 1..k."""
    return [*range(-context, 0), *range(1, context + 1)]


class SliceDataset(Dataset):
    """Slices of one split of a cache.

    ``lesion_only`` keeps lesion-containing slices (the paper trains on these only), ``lesion_free``
    the others (the healthy slices the baselines train against); ``fraction``
    keeps a seeded subset of the split's cases (at least one; nested across fractions for one seed:
    GVS(0.3) is trained on a subset of GVS(0.5)'s cases); ``augment`` applies seeded flips and small
    rotations (and with ``augment_scale`` a zoom per axis, with ``augment_elastic`` a smooth warp), replayable per ``(seed, epoch, cache row)``
    (call :meth:`set_epoch` each epoch).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        split: str = "train",
        lesion_only: bool = False,
        fraction: float = 1.0,
        seed: int = 0,
        augment: bool = False,
        crop_size: int | None = None,
        lesion_crop_probability: float = 0.7,
        with_healthy: bool = False,
        intensity_augment: bool = False,
        intensity_curve: float = 0.0,
        lesion_free: bool = False,
        augment_scale: float = 0.0,
        augment_elastic: float = 0.0,
        online_lesions: float = 0.0,
        online_max_lesions: int = 2,
        mirror: bool = False,
        context: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise UserError(f"split {split!r} is unknown; choose one of {', '.join(SPLITS)}.")
        if lesion_only and lesion_free:
            raise UserError("a slice data set cannot be both lesion_only and lesion_free.")
        self.cache_dir = Path(cache_dir)
        self.fingerprint: dict[str, Any] = read_fingerprint(self.cache_dir)
        self.split = split
        self.lesion_only = lesion_only
        self.seed = int(seed)
        self.augment = augment
        if augment_scale < 0:
            raise UserError(f"augment_scale {augment_scale}: the zoom range must be 0 (none) or positive.")
        self.augment_scale = float(augment_scale)
        if augment_elastic < 0:
            raise UserError(f"augment_elastic {augment_elastic}: the warp's size must be 0 (none) or positive pixels.")
        self.augment_elastic = float(augment_elastic)
        self.epoch = 0
        table = read_slice_table(self.cache_dir)
        all_cases = list(self.fingerprint["cases"])
        if split == "all":
            cases = all_cases
        else:
            cases = read_splits(self.cache_dir / "splits.json")[split]
        if fraction != 1.0:
            cases = subset_cases(cases, fraction, seed)
        self.case_ids: list[str] = sorted(cases)
        keep = set(self.case_ids)
        self.rows = [r for r in table if r.case_id in keep and (r.has_lesion or not lesion_only)
                     and not (r.has_lesion and lesion_free)]
        self._indices = np.array([r.index for r in self.rows], dtype=np.int64)
        self.working_size: tuple[int, int] = tuple(self.fingerprint["working_size"])  # type: ignore[assignment]
        self.has_healthy: bool = bool(self.fingerprint.get("has_healthy", False))
        if with_healthy and not self.has_healthy:
            raise UserError(f"{self.cache_dir}: this cache holds no true healthy images, which the recipe's supervised "
                            "terms need (train.supervised_weight > 0, train.fill_weight > 0); use `pseudohealthy pipeline --data DATA`, which "
                            "inserts lesions with known truth itself, or preprocess `pseudohealthy phantom --kind inserted "
                            "--from DATA`, or train with train.supervised_weight=0 and train.fill_weight=0, or --preset small (the paper's loss).")
        self.with_healthy = with_healthy
        self.intensity_augment = intensity_augment
        self.intensity_curve = intensity_curve
        if crop_size is not None and crop_size < 1:
            raise UserError(f"{self.cache_dir}: crop size {crop_size} must be a positive number of pixels.")
        # A crop as large as the slice (a recipe's crop on smaller data, e.g. the 96-pixel phantom) is
        # the whole slice, cut to a square: the largest crop the data allows.
        self.crop_size = None if crop_size is None else min(int(crop_size), min(self.working_size))
        self.lesion_crop_probability = float(lesion_crop_probability)
        if not 0.0 <= online_lesions <= 1.0 or online_max_lesions < 1:
            raise UserError(f"online lesions: probability {online_lesions} must be in [0, 1] and the most lesions per "
                            f"crop ({online_max_lesions}) at least 1.")
        self.online_lesions = float(online_lesions)
        self.online_max_lesions = int(online_max_lesions)
        self.organ = organ_of_source(str(self.fingerprint.get("source", "brats")))
        self._lesion_model = default_model(self.organ)  # read only; a fresh copy per item cost ~2 ms
        self.mirror = bool(mirror)
        self._midlines: dict[int, int] = {}  # cache row -> its slice's reflection (pseudohealthy/mirror.py)
        if context < 0 or (context and mirror):
            raise UserError(f"context {context} (model.gen_gate_context): neighbouring slices must be 0 or more, and do not "
                            "combine with the mirror (model.gen_gate_mirror).")
        self.context = int(context)
        # (case, z) -> cache row, for the neighbours of a slice (every case of the cache: rows are global)
        self._row_at = {(r.case_id, r.z): r.index for r in table} if context else {}
        self._arrays: dict[str, np.ndarray] = {}
        self._pid = -1

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation stream of this epoch (same epoch, same transforms)."""
        self.epoch = int(epoch)

    def _array(self, name: str) -> np.ndarray:
        # Opened per process: a memory map inherited through fork is fine, one pickled to a spawned
        # worker would be copied whole.
        if self._pid != os.getpid():
            self._arrays = {}
            self._pid = os.getpid()
        if name not in self._arrays:
            self._arrays[name] = open_array(self.cache_dir, name)
        return self._arrays[name]

    def __len__(self) -> int:
        return len(self._indices)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = {}
        state["_pid"] = -1
        return state

    def _mirror_of(self, row: int, image: np.ndarray) -> np.ndarray:
        """The cached slice ``row`` mirrored about its own midline (searched once per row)."""
        if row not in self._midlines:
            self._midlines[row] = slice_midline(image)
        return reflect_slice(image, self._midlines[row])

    def _jitter_mirror(self, row: int, mirrored: np.ndarray) -> np.ndarray:
        """The mirror's own small warp and grey-level change, drawn apart from the image's: the other
        hemisphere of a real head never matches pixel for pixel (head tilt, a mass pushing the midline,
        a bias field), and a gate trained on a perfectly matching mirror flags every such mismatch in an
        unseen subject (measured, docs/quality.md, session 11)."""
        rng = np.random.default_rng([self.seed, self.epoch, row, 17])
        own = sample_augmentation(rng, max_angle=MIRROR_MAX_ANGLE, p_flip_h=0.0, max_scale=MIRROR_MAX_SCALE,
                                  elastic=self.augment_elastic, size=max(mirrored.shape))
        mirrored = apply_augmentation(own, mirrored)[0]
        if self.intensity_augment:
            mirrored = apply_intensity(sample_intensity(rng, gamma=MIRROR_GAMMA, contrast=MIRROR_CONTRAST), mirrored)
        return mirrored

    def _neighbours_of(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item ``i``'s neighbouring slices z-k..z-1, z+1..z+k of its case as (image, lesion, region) stacks
        ``(2k, H, W)``; a slice the cache does not hold is background (image -1, empty masks)."""
        slot = self.rows[i]
        images, lesions, regions = [], [], []
        for offset in neighbour_offsets(self.context):
            row = self._row_at.get((slot.case_id, slot.z + offset))
            if row is None:
                image, lesion, region = (np.full(self.working_size, -1.0, np.float32), np.zeros(self.working_size, np.uint8),
                                         np.zeros(self.working_size, np.uint8))
            else:
                image, lesion, region = self._slice_arrays(row)
            images.append(image)
            lesions.append(lesion)
            regions.append(region)
        return np.stack(images), np.stack(lesions), np.stack(regions)

    def _slice_arrays(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cache row ``row``'s image (float32), lesion and region masks (uint8), as fresh arrays."""
        return (np.array(self._array("images")[row], dtype=np.float32), np.array(self._array("lesions")[row], dtype=np.uint8),
                np.array(self._array("regions")[row], dtype=np.uint8))

    def _arrays_at(self, i: int, with_healthy: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                                                              np.ndarray | None]:
        """Item ``i``'s arrays after augmentation, crop and online lesions; the true healthy slice
        only when asked for (reading and warping it is a third of an item's time when unused); with
        ``mirror`` the whole slice's mirror image, warped, cut and intensity-mapped as the image (the
        lesions pasted into the crop are not in it: the other hemisphere of a new lesion is healthy);
        the last element is the image's extra channels ``(C, H, W)`` (the mirror, or with ``context`` the
        neighbouring slices), or None."""
        row = int(self._indices[i])
        image, lesion, region = self._slice_arrays(row)
        healthy = np.array(self._array("healthy")[row], dtype=np.float32) if with_healthy else None
        mirrored = self._mirror_of(row, image) if self.mirror else None
        if mirrored is not None and self.augment:
            mirrored = self._jitter_mirror(row, mirrored)
        around = self._neighbours_of(i) if self.context else None  # (image, lesion, region) stacks (2k, H, W)
        if self.augment:
            params = sample_augmentation(augmentation_rng(self.seed, self.epoch, row), max_scale=self.augment_scale,
                                         elastic=self.augment_elastic, size=max(image.shape))
            window = None
            if self.crop_size is not None:
                # the crop is placed first and only its pixels are warped (a third of the work for a
                # 128-pixel crop of a 240-pixel slice; the same pixels as warping the whole slice)
                top, left = self._crop_corner(row, flip_slice(params, lesion), flip_slice(params, region), params)
                window = (top, left, self.crop_size, self.crop_size)
            image, lesion, region = apply_augmentation(params, image, lesion, region, window=window)
            if healthy is not None:  # the same warp as the image, once (tests/data/test_dataset.py)
                healthy = apply_augmentation(params, healthy, window=window)[0]
            if mirrored is not None:
                mirrored = apply_augmentation(params, mirrored, window=window)[0]
            if around is not None:
                warped = [apply_augmentation(params, *arrays, window=window) for arrays in zip(*around)]
                around = tuple(np.stack(parts) for parts in zip(*warped))
        elif self.crop_size is not None:
            top, left = self._crop_corner(row, lesion, region)
            cut = (slice(top, top + self.crop_size), slice(left, left + self.crop_size))
            image, lesion, region = image[cut], lesion[cut], region[cut]
            healthy = healthy[cut] if healthy is not None else None
            mirrored = mirrored[cut] if mirrored is not None else None
            around = tuple(a[(slice(None), *cut)] for a in around) if around is not None else None
        if self.online_lesions > 0:
            rng = np.random.default_rng([self.seed, self.epoch, row, 13])
            if rng.random() < self.online_lesions:
                scale, offset = self.scale_offset(i)
                if around is None:
                    image, lesion, _ = paste_lesions(rng, image, lesion, region, scale, offset, self.organ,
                                                     self.online_max_lesions, self._lesion_model)
                else:  # one 3-D lesion through the slice and its neighbours, in z order
                    k = self.context
                    stacks = [np.concatenate([a[:k], b[None], a[k:]]) for a, b in zip(around, (image, lesion, region))]
                    images, lesions, _ = paste_lesions(rng, *stacks, scale, offset, self.organ,
                                                       self.online_max_lesions, self._lesion_model)
                    image, lesion = images[k], lesions[k]
                    around = (np.concatenate([images[:k], images[k + 1:]]), *around[1:])
        # pixel-wise, so after the crop it gives what it gave before it (runs before online lesions replay)
        if self.intensity_augment:
            params_i = sample_intensity(np.random.default_rng([self.seed, self.epoch, row, 11]),
                                        curve_strength=self.intensity_curve)
            image = apply_intensity(params_i, image)
            healthy = apply_intensity(params_i, healthy) if healthy is not None else None
            mirrored = apply_intensity(params_i, mirrored) if mirrored is not None else None
            around = (apply_intensity(params_i, around[0]), *around[1:]) if around is not None else None
        extra = mirrored[None] if mirrored is not None else None
        if around is not None:
            extra = around[0]
            if self.augment and np.random.default_rng([self.seed, self.epoch, row, 17]).random() < 0.5:
                extra = extra[::-1]  # z flipped: the neighbours below become those above
        return image, lesion, region, healthy, extra

    def _crop_corner(self, row: int, lesion: np.ndarray, region: np.ndarray,
                     params: AugmentParams | None = None) -> tuple[int, int]:
        """Top-left corner of this item's crop, seeded by (seed, epoch, row) like the augmentation.

        With ``params`` the masks are the flipped, not yet warped ones, and the crop is centred where
        the transform's rotation and zoom take the chosen pixel (its elastic part, a few pixels, is
        within the centre's jitter)."""
        rng = np.random.default_rng([self.seed, self.epoch, row, 7])
        size = self.crop_size
        height, width = lesion.shape
        pick_lesion = lesion.any() and rng.random() < self.lesion_crop_probability
        where = np.flatnonzero(lesion if pick_lesion else region)
        if where.size:
            cy, cx = np.unravel_index(int(where[rng.integers(where.size)]), lesion.shape)
            if params is not None:
                cy, cx = (int(v) for v in np.rint(warped_position(params, lesion.shape, (cy, cx))))
            # Jitter, so that a lesion is not always in the crop's centre.
            cy += int(rng.integers(-size // 4, size // 4 + 1))
            cx += int(rng.integers(-size // 4, size // 4 + 1))
        else:
            cy, cx = height // 2, width // 2
        top = int(np.clip(cy - size // 2, 0, height - size))
        left = int(np.clip(cx - size // 2, 0, width - size))
        return top, left

    def __getitem__(self, i: int) -> tuple:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} slices")
        i = i % len(self)
        image, lesion, region, healthy, extra = self._arrays_at(i, self.with_healthy)
        row = self.rows[i]
        channels = (image,) if extra is None else (image, *extra)
        item = (
            torch.from_numpy(np.stack(channels).astype(np.float32, copy=False)),
            torch.from_numpy(lesion.astype(np.float32))[None],
            torch.from_numpy(region.astype(np.float32))[None],
            row.case_id,
            row.z,
        )
        if self.with_healthy:
            return (*item, torch.from_numpy(np.ascontiguousarray(healthy))[None])
        return item

    def healthy(self, i: int) -> torch.Tensor:
        """The true healthy slice ``(1, H, W)`` float32 of item ``i`` (phantom data only), with the
        same augmentation as :meth:`__getitem__`."""
        if not self.has_healthy:
            raise UserError(f"{self.cache_dir}: this cache holds no true healthy images (only the phantom has them).")
        _, _, _, healthy, _ = self._arrays_at(i % len(self), True)
        return torch.from_numpy(healthy)[None]  # type: ignore[arg-type]

    def scale_offset(self, i: int) -> tuple[float, float]:
        """``(scale, offset)`` of item ``i``: ``normalised = scale * clipped_input + offset``."""
        row = self.rows[i]
        return row.scale, row.offset
