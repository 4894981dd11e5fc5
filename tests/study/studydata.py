"""Names and data of the reader study tests (plain helpers; the fixtures are in studykit.py)."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def _root_conftest():
    """tests/conftest.py loaded by path: the name ``conftest`` may point at another folder's conftest."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_study_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


write_tiny_brats_case = _root_conftest().write_tiny_brats_case

# Long, distinctive method names: none can turn up by chance in a random token or hex image name,
# so finding one in anything served is a leak.
METHODS = ("GVSfullMethod", "GVSbasicMethod", "OriginalImagesMethod", "CounterfeitMeanMethod", "CounterfeitNoiseMethod")


def write_method_outputs(data: Path, root: Path, names: tuple[str, ...] = METHODS) -> dict[str, Path]:
    """One folder per method with ``<case>.nii.gz`` in the input's geometry (stand-ins for real outputs).

    full/basic: lesion filled with normal tissue (fully / halfway); original: the input itself;
    the two counterfeits of the paper's Fig. 6: mean fill, and Gaussian noise inside the lesion.
    """
    rng = np.random.default_rng(0)
    folders = {}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        folders[name] = folder
    for case in sorted(p for p in data.iterdir() if p.is_dir()):
        img = nib.load(str(case / f"{case.name}_t2.nii.gz"))
        lesion = np.asarray(nib.load(str(case / f"{case.name}_seg.nii.gz")).dataobj) > 0
        x = np.asarray(img.dataobj).astype(np.float32)
        normal = x[(x > 0) & ~lesion].mean()
        outputs = {
            "GVSfullMethod": np.where(lesion, normal, x),
            "GVSbasicMethod": np.where(lesion, 0.5 * (x + normal), x),
            "OriginalImagesMethod": x,
            "CounterfeitMeanMethod": np.where(lesion, normal, x),
            "CounterfeitNoiseMethod": np.where(lesion, x + rng.normal(0, 60, x.shape), x),
        }
        for name in names:
            nib.save(nib.Nifti1Image(outputs[name].astype(np.float32), img.affine), str(folders[name] / f"{case.name}.nii.gz"))
    return folders


def method_args(methods: dict[str, Path]) -> list[str]:
    args: list[str] = []
    for name, folder in methods.items():
        args += ["--method", f"{name}={folder}"]
    return args
