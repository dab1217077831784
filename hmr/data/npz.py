"""HMR 2.0's evaluation npz files (3DPW-TEST, H36M-VAL-P2, LSP-EXTENDED, COCO-VAL, POSETRACK-VAL and the
sets ``hmr data synth`` writes) with their image folder, and the mocap npz of the discriminator.

Evaluation npz fields (hmr2-facts.md §5), one row per person: ``imgname`` (relative to the image root),
``center`` (N, 2), ``scale`` (N,) or (N, 2) box size **in pixels**, ``body_keypoints_2d`` (N, 25, 3),
``extra_keypoints_2d`` (N, 19, 3); optional ``body_keypoints_3d`` (N, 25, 4), ``extra_keypoints_3d``
(N, 19, 4), ``body_pose`` (N, 72), ``has_body_pose``, ``betas`` (N, 10), ``has_betas``; ``extra_info`` and
``part`` are not read (``extra_info`` may hold pickled objects, which are never loaded). Synthetic sets add
``focal_length`` and ``principal_point`` (N, 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hmr.data.errors import BadSample, DatasetLayoutError
from hmr.data.fields import FilterConfig, apply_filters, person_annotation
from hmr.data.sample import Annotation
from hmr.data.tars import decode_image

REQUIRED = ("imgname", "center", "scale", "body_keypoints_2d", "extra_keypoints_2d")
OPTIONAL = ("body_keypoints_3d", "extra_keypoints_3d", "body_pose", "has_body_pose", "betas", "has_betas",
            "focal_length", "principal_point")  # fmt: skip
# 4D-Humans zeroes the 3D confidence of OpenPose joints 1-14 read from npz files (their 3D positions come from
# the 19 extra joints instead); only face and feet keep OpenPose 3D supervision.
NO_3D_OPENPOSE = tuple(range(1, 15))


def _load(path: Path) -> dict[str, np.ndarray]:
    from hmr.io.arrays import load_npz

    try:
        return load_npz(path, skip_objects=True)
    except (OSError, ValueError) as err:
        raise DatasetLayoutError(str(err)) from None


class NpzReader:
    """A HMR 2.0 evaluation npz as (image, Annotation) pairs. ``image_root``: the folder ``imgname`` is
    relative to (default: the npz's folder). ``filters``: off by default (evaluation sets are not filtered)."""

    def __init__(self, path: str | os.PathLike, image_root: str | os.PathLike | None = None, name: str | None = None,
                 filters: FilterConfig | None = None):  # fmt: skip
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DatasetLayoutError(f"{self.path}: evaluation npz not found")
        data = _load(self.path)
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise DatasetLayoutError(f"{self.path}: not a HMR 2.0 evaluation npz (no {', '.join(missing)})")
        n = len(data["imgname"])
        bad = [k for k in (*REQUIRED, *OPTIONAL) if k in data and len(data[k]) != n]
        if bad:
            raise DatasetLayoutError(f"{self.path}: {bad[0]} has {len(data[bad[0]])} rows, imgname has {n}")
        self.name = name or self.path.stem
        self.root = Path(image_root).expanduser() if image_root else self.path.parent
        if not self.root.is_dir():
            raise DatasetLayoutError(f"{self.root}: image folder not found (images of {self.path})")
        if n and not (self.root / str(data["imgname"][0])).is_file():
            raise DatasetLayoutError(
                f"{self.root / str(data['imgname'][0])}: image not found (imgname entries of {self.path} are "
                "relative to the image root; pass the folder that holds them)"
            )
        self.data = {k: data[k] for k in (*REQUIRED, *OPTIONAL) if k in data}
        # Synthetic sets name the body model their ground truth was made with (None: an SMPL dataset).
        self.body_model = str(data["body_model"]) if "body_model" in data else None
        self.filters = filters if filters is not None else FilterConfig(enabled=False)

    def __len__(self) -> int:
        return len(self.data["imgname"])

    def person(self, index: int) -> dict:
        """Row ``index`` in the 4D-Humans per-person layout (``hmr.data.fields``)."""
        d = self.data
        kp3d = np.concatenate(
            [d.get("body_keypoints_3d", np.zeros((len(self), 25, 4)))[index],
             d.get("extra_keypoints_3d", np.zeros((len(self), 19, 4)))[index]]
        ).astype(np.float32)  # fmt: skip
        kp3d[list(NO_3D_OPENPOSE), 3] = 0.0
        out = {
            "keypoints_2d": np.concatenate([d["body_keypoints_2d"][index], d["extra_keypoints_2d"][index]]),
            "keypoints_3d": kp3d,
            "center": d["center"][index],
            "scale": np.asarray(d["scale"][index], np.float32) / 200.0,
        }
        for k in ("body_pose", "has_body_pose", "betas", "has_betas", "focal_length", "principal_point"):
            if k in d:
                out[k] = d[k][index]
        return out

    def read(self, index: int) -> tuple[np.ndarray, Annotation]:
        name = str(self.data["imgname"][index])
        where = f"{self.path}[{index}]"
        ann = apply_filters(person_annotation(self.person(index), where, self.name, f"{index}:{name}"), self.filters)
        try:
            data = (self.root / name).read_bytes()
        except OSError as err:
            raise BadSample("missing_key", f"{where}: image {self.root / name} unreadable ({err.strerror})") from None
        return decode_image(data, str(self.root / name)), ann


class MocapReader:
    """The discriminator's mocap npz (``cmu_mocap.npz``): ``body_pose`` (N, 72) axis-angle, of which the
    first 3 (global orientation) are dropped, and ``betas`` (N, 10)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DatasetLayoutError(f"{self.path}: mocap npz not found (4D-Humans' hmr2_training_data/cmu_mocap.npz)")
        data = _load(self.path)
        for key, width in (("body_pose", 72), ("betas", 10)):
            if key not in data:
                raise DatasetLayoutError(f"{self.path}: not a mocap npz (no {key!r}; expected body_pose (N, 72), betas (N, 10))")
            if data[key].ndim != 2 or data[key].shape[1] < width:
                raise DatasetLayoutError(f"{self.path}: {key!r} has shape {data[key].shape}, expected (N, {width})")
        if len(data["body_pose"]) != len(data["betas"]):
            raise DatasetLayoutError(f"{self.path}: body_pose and betas differ in length")
        finite = np.isfinite(data["body_pose"][:, :72]).all(1) & np.isfinite(data["betas"][:, :10]).all(1)
        self.skipped = int((~finite).sum())  # NaN rows are dropped once, here
        self.body_pose = np.ascontiguousarray(data["body_pose"][finite, 3:72], np.float32)
        self.betas = np.ascontiguousarray(data["betas"][finite, :10], np.float32)

    def __len__(self) -> int:
        return len(self.betas)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(69,) body pose axis-angle and (10,) betas of row ``index``."""
        return self.body_pose[index], self.betas[index]
