"""Reading 2D keypoints made by other tools, to fit them with :func:`hmr.fitting.fit`."""

from __future__ import annotations

import json
import os

import numpy as np

# Keypoints per person -> the format ``hmr.fitting.fit`` calls them (orders in docs/conventions.md).
_FORMAT_BY_COUNT = {25: "openpose25", 17: "coco17", 33: "blazepose33"}


def read_openpose_json(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, str | None]:
    """An OpenPose-style JSON file (``{"people": [{"pose_keypoints_2d": [x, y, c, ...]}, ...]}``, one file per
    image, as OpenPose's ``--write_json`` and many other tools write it).

    Returns keypoints (P, K, 2) pixels, confidences (P, K) and the keypoint format for ``fit``'s
    ``keypoint_format``: ``openpose25`` (OpenPose BODY_25), ``coco17`` or ``blazepose33``, from K; None when
    nobody is in the file. OpenPose writes missing keypoints as (0, 0, 0): confidence 0, so ``fit`` ignores them.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file, so not OpenPose JSON") from None
    except OSError as err:
        raise type(err)(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise ValueError(f'{path}: expected an OpenPose JSON object with a "people" list')
    rows = []
    for i, person in enumerate(data["people"]):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(flat, list) or len(flat) % 3 or len(flat) // 3 not in _FORMAT_BY_COUNT:
            n = f"{len(flat) / 3:g}" if isinstance(flat, list) else "no"
            raise ValueError(
                f'{path}: person {i} has {n} "pose_keypoints_2d" points; expected x, y, confidence triples for '
                "25 (OpenPose BODY_25), 17 (COCO) or 33 (BlazePose) keypoints (OpenPose's 18-point COCO model "
                "is not supported: run OpenPose with --model_pose BODY_25)"
            )
        try:
            rows.append(np.asarray(flat, dtype=np.float32).reshape(-1, 3))
        except (TypeError, ValueError):
            raise ValueError(f'{path}: person {i} has "pose_keypoints_2d" values that are not numbers') from None
    if not rows:
        return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.float32), None
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{path}: people have different numbers of keypoints ({sorted({len(r) for r in rows})})")
    kp = np.stack(rows)
    if not np.isfinite(kp).all() or (kp[..., 2] < 0).any():
        raise ValueError(f"{path}: keypoints must be finite numbers and confidences >= 0")
    return kp[..., :2], kp[..., 2], _FORMAT_BY_COUNT[kp.shape[1]]
