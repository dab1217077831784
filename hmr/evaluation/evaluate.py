"""``evaluate(model, dataset, protocol=...)``: score a network or the fitting pipeline on an evaluation set by
one of the papers' protocols (docs/evaluation.md).

Predictions are re-posed with the evaluation body model from their SMPL parameters (global orientation, body
pose, betas), so networks and fitting are scored from the same quantities: the 44 HMR 2.0 keypoints
(``openpose25`` + ``extra19``), the H36M joints for SMPLer's protocol, and the mesh. Ground truth comes from
the dataset: its 3D keypoints, its 2D keypoints, and for meshes its SMPL parameters posed with the same body
model. Evaluation crops are plain (no augmentation); boxes are padded to HMR 2.0's 192:256 aspect.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hmr.body import KeypointSetUnavailableError
from hmr.data import Batch, DataConfig, DatasetLayoutError, DatasetSpec, SampleDataset, collate, evaluation_dataset
from hmr.data.sample import J24_TO_44
from hmr.evaluation import metrics, protocols
from hmr.evaluation.predictors import FittingPredictor, NetworkPredictor, Predictor
from hmr.evaluation.sets import resolve_set

# protocol -> (headline metrics, what it needs). Every protocol reports per-sample values (mm or shares).
PROTOCOLS = {
    "hmr2_3d": ("mpjpe", "pa_mpjpe"),
    "hmr2_pck": ("pck@0.05", "pck@0.1"),
    "smpler_3d": ("mpjpe", "pa_mpjpe", "pve"),
    "synthetic": ("mpjpe", "pa_mpjpe", "pve", "pa_pve", "pck@0.05", "pck@0.1"),
}
HMR2_JOINT_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp",
                    "head_h36m")  # fmt: skip
SMPLER_JOINT_NAMES = HMR2_JOINT_NAMES[:13] + ("head",)


@dataclass
class EvalResult:
    """One evaluation: headline ``metrics`` (means over the scored samples; mm for errors, shares for PCK),
    ``per_joint`` means (metric -> joint or keypoint name -> value; NaN where never visible), ``per_sample`` values (metric ->
    (N,) in the order of ``keys``), how many samples were ``scored`` of those read (``samples``; the fitting
    pipeline can miss a person), what the readers ``skipped`` and the time taken."""

    model: str
    checkpoint_hash: str
    dataset: str
    protocol: str
    samples: int
    scored: int
    metrics: dict[str, float]
    per_joint: dict[str, dict[str, float]]
    keys: list[str] = field(default_factory=list)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    timed: int = 0  # samples predicted in ``seconds`` (a resumed run counts only its own)

    @property
    def samples_per_second(self) -> float:
        return self.timed / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        """A short text table: the headline metrics and the counts."""
        rows = [f"{self.model} on {self.dataset} ({self.protocol}): {self.scored}/{self.samples} samples scored"]
        for k, v in self.metrics.items():
            unit = "" if k.startswith("pck") else " mm"
            rows.append(f"  {k:<10} {v:9.3f}{unit}" if k.startswith("pck") else f"  {k:<10} {v:9.1f}{unit}")
        if self.skipped:
            rows.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in self.skipped.items()))
        rows.append(f"  {self.samples_per_second:.1f} samples/s")
        return "\n".join(rows)


def file_hash(path: str | os.PathLike) -> str:
    """The first 16 hex digits of a file's SHA-256 (what the results history keys checkpoints by)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _pose(body, mesh) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(vertices, keypoint sets) of the body model posed with a MeshOutput's or a batch's SMPL
    parameters, camera-frame orientation, no translation."""
    dt, dev = body.v_template.dtype, body.v_template.device
    with torch.no_grad():
        out = body(*(t.to(dev, dt) for t in mesh))
    return out.vertices.double().cpu(), {k: v.double().cpu() for k, v in out.keypoints.items()}


def _keypoints44(body, kps: dict[str, torch.Tensor]) -> torch.Tensor:
    missing = [s for s in ("openpose25", "extra19") if s not in kps]
    if missing:
        raise KeypointSetUnavailableError(
            f"body model {body.name!r} lacks {missing}: HMR 2.0's protocol scores its 44 keypoints; for SMPL "
            "give SMPL_to_J19.pkl (--smpl-j19)"
        )
    return torch.cat([kps["openpose25"], kps["extra19"]], 1)


def score_batch(protocol: str, pred, batch: Batch, body) -> dict[str, torch.Tensor]:
    """Per-sample scores of one batch (predicted crops only): metric -> (B,) and metric_joints -> (B, J)."""
    pv, pk = _pose(body, (pred.global_orient, pred.body_pose, pred.betas))
    out: dict[str, torch.Tensor] = {}
    if protocol in ("hmr2_3d", "synthetic"):
        out.update(protocols.hmr2_3d(_keypoints44(body, pk), batch.keypoints_3d.double()))
    if protocol in ("hmr2_pck", "synthetic"):
        gt = batch.normalised_keypoints_2d().double()
        pred2d = _crop_keypoints(pred, _keypoints44(body, pk), batch)
        out.update(protocols.hmr2_pck(pred2d, gt, batch.bbox_expand_factor.double()))
    if protocol == "synthetic":  # meshes of one body model: both centred on their own pelvis (joint 39)
        gv, gk = _pose(body, (batch.global_orient[:, None], batch.body_pose, batch.betas))
        i = protocols.HMR2_PELVIS
        pv_c = pv - _keypoints44(body, pk)[:, i : i + 1]
        gv_c = gv - _keypoints44(body, gk)[:, i : i + 1]
        out["pve"] = 1000 * metrics.pve(pv_c, gv_c)
        out["pa_pve"] = 1000 * metrics.pa_pve(pv_c, gv_c)
    if protocol == "smpler_3d":
        if "h36m17" not in pk:
            raise KeypointSetUnavailableError(
                f"body model {body.name!r} has no H36M joint regressor: SMPLer's protocol regresses the 17 H36M "
                "joints from the mesh; give J_regressor_h36m.npy (--h36m-regressor)"
            )
        gv, gk = _pose(body, (batch.global_orient[:, None], batch.body_pose, batch.betas))
        res = protocols.smpler_3d(pk["h36m17"], batch.keypoints_3d.double()[:, list(J24_TO_44)], pv, gv,
                                  pk["h36m17"][:, 0], gk["h36m17"][:, 0])  # fmt: skip
        has_smpl = batch.has_body_pose.bool()
        res["pve"] = torch.where(has_smpl, res["pve"], torch.full_like(res["pve"], float("nan")))
        out.update(res)
    return out


def _crop_keypoints(pred, kp44: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Predicted 44 keypoints in normalised crop units: a network's own, or (the fit, whose image is the crop)
    the posed keypoints moved by its translation and projected with the crop's camera."""
    s = float(batch.images.shape[-1])
    if pred.keypoints_2d is not None and pred.keypoints_2d.shape[1] == kp44.shape[1]:
        return pred.keypoints_2d.double().cpu()
    if pred.cam_t_full is None:
        raise ValueError("the prediction has neither crop keypoints nor a camera translation")
    x = kp44 + pred.cam_t_full.double().cpu()[:, None]
    uv = x[..., :2] / x[..., 2:3] * batch.focal_length.double()[:, None] + batch.principal_point.double()[:, None]
    return uv / s - 0.5


def _predictor(model) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if isinstance(model, str) and model == "fit":
        return FittingPredictor()
    if isinstance(model, torch.nn.Module):
        return NetworkPredictor(model)
    raise TypeError(f"evaluate() takes a network, 'fit' or a Predictor, not {type(model).__name__}")


def evaluate(
    model,
    dataset,
    protocol: str | None = None,
    *,
    body_model=None,
    data_root: str | os.PathLike | None = None,
    image_root: str = "",
    batch_size: int = 16,
    num_workers: int = 0,
    limit: int = 0,
    checkpoint_hash: str = "",
    state_path: str | os.PathLike | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score ``model`` (a network from ``hmr.models``, ``"fit"`` for the fitting pipeline, or a
    :class:`Predictor`) on ``dataset`` (a set name of ``hmr.evaluation.sets.EVAL_SETS``, a path, a
    ``DatasetSpec`` or a ``SampleDataset``) by ``protocol`` (default: the set's own; ``PROTOCOLS`` lists them).

    body_model: the body model predictions and ground truth are posed with (default: the predictor's).
    limit: score at most this many samples. state_path: an ``.npz`` where per-sample scores are saved as the run
    goes (atomically, every few batches); a rerun with the same file skips the samples it already holds, so a
    large set can be evaluated across interruptions."""
    from tqdm import tqdm

    predictor = _predictor(model)
    body = body_model if body_model is not None else predictor.body_model
    name = getattr(dataset, "name", None) or str(dataset)
    if isinstance(dataset, SampleDataset):
        ds, default_protocol = dataset, "hmr2_3d"
    else:
        if isinstance(dataset, DatasetSpec):
            spec, default_protocol, name = resolve_set(dataset.path, data_root, dataset.image_root)
        else:
            spec, default_protocol, name = resolve_set(str(dataset), data_root, image_root)
        ds = evaluation_dataset(spec, DataConfig(image_size=predictor.image_size))
    protocol = protocol or default_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    synth_model = getattr(ds.reader, "body_model", None)
    if protocol == "synthetic" and synth_model is not None and synth_model != body.name:
        raise DatasetLayoutError(
            f"{name}: its ground truth was made with body model {synth_model!r}; evaluate with that model, not {body.name!r}"
        )
    if protocol == "smpler_3d" and body.num_vertices != 6890:
        raise KeypointSetUnavailableError(
            f"SMPLer's protocol scores SMPL meshes; give the neutral SMPL model (--smpl SMPL_NEUTRAL.pkl, from "
            f"smpl.is.tue.mpg.de), not {body.name!r}"
        )

    run_id = f"{predictor.name}|{checkpoint_hash}|{name}|{protocol}"
    done = _load_state(state_path, run_id)
    keys: list[str] = list(done.get("keys", []))
    columns: dict[str, list[np.ndarray]] = {k: [v] for k, v in done.items() if k != "keys"}
    seen = set(keys)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    total = min(len(ds), limit) if limit and len(ds) else (limit or len(ds) or None)
    t0 = time.perf_counter()
    read = resumed = len(keys)
    bar = tqdm(total=total, initial=read, desc=f"eval {predictor.name} on {name}", unit="samples", disable=not progress)
    with contextlib.closing(bar):
        for step, batch in enumerate(loader):
            todo = [i for i, k in enumerate(batch.key) if k not in seen]
            if limit:
                todo = todo[: max(0, limit - read)]
            if not todo:
                if limit and read >= limit:
                    break
                continue
            sub = _select(batch, todo)
            pred, found = predictor(sub)
            scores = score_batch(protocol, pred, _select(sub, found.nonzero()[:, 0].tolist()), body) if pred is not None else {}
            for k, v in _expand(scores, found, len(sub)).items():
                columns.setdefault(k, []).append(v)
            columns.setdefault("predicted", []).append(found.numpy().astype(np.float64))
            keys += sub.key
            seen.update(sub.key)
            read += len(sub)
            bar.update(len(sub))
            if state_path is not None and step % 5 == 4:
                _save_state(state_path, run_id, keys, columns)
            if limit and read >= limit:
                break
    if state_path is not None:
        _save_state(state_path, run_id, keys, columns)
    per_sample = {k: np.concatenate(v) for k, v in columns.items()}
    return _result(predictor.name, checkpoint_hash, name, protocol, keys, per_sample, ds.skips.counts(),
                   time.perf_counter() - t0, read - resumed)  # fmt: skip


def _select(batch: Batch, idx: list[int]) -> Batch:
    from dataclasses import fields

    return Batch(**{
        f.name: (getattr(batch, f.name)[idx] if isinstance(getattr(batch, f.name), torch.Tensor)
                 else [getattr(batch, f.name)[i] for i in idx])
        for f in fields(Batch)
    })  # fmt: skip


def _expand(scores: dict[str, torch.Tensor], found: torch.Tensor, n: int) -> dict[str, np.ndarray]:
    """Scores of the predicted crops -> arrays over all ``n`` crops, NaN where there was no prediction."""
    out = {}
    for k, v in scores.items():
        full = np.full((n, *v.shape[1:]), np.nan)
        full[found.numpy()] = v.numpy()
        out[k] = full
    return out


def _result(model, ckpt, dataset, protocol, keys, per_sample, skipped, seconds, timed) -> EvalResult:
    predicted = per_sample.pop("predicted", np.zeros(0))
    headline = {}
    for m in PROTOCOLS[protocol]:
        v = per_sample.get(m)
        if v is not None and np.isfinite(v).any():
            headline[m] = float(np.nanmean(v))
    from hmr.data import KEYPOINT_NAMES

    joints = SMPLER_JOINT_NAMES if protocol == "smpler_3d" else HMR2_JOINT_NAMES
    per_joint = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: keypoints never visible
        for k, v in per_sample.items():
            if k.endswith("_joints") and v.size and np.isfinite(v).any():
                names = KEYPOINT_NAMES if k.startswith("pck") else joints
                per_joint[k[: -len("_joints")]] = dict(zip(names, np.nanmean(v, axis=0).tolist(), strict=True))
    return EvalResult(model, ckpt, dataset, protocol, len(keys), int(predicted.sum()), headline, per_joint, keys,
                      per_sample, skipped, seconds, timed)  # fmt: skip


def _load_state(path, run_id: str) -> dict[str, np.ndarray]:
    """Per-sample scores saved by an interrupted run of the same model, checkpoint, set and protocol."""
    if path is None or not Path(path).is_file():
        return {}
    from hmr.io.arrays import load_npz

    state = load_npz(path)
    if str(state.pop("run", "")) != run_id:
        raise ValueError(f"{path}: holds the scores of another evaluation ({state.get('run', '?')}); remove it or "
                         "choose another output folder")  # fmt: skip
    return state


def _save_state(path, run_id: str, keys: list[str], columns: dict[str, list[np.ndarray]]) -> None:
    from hmr.io.exports import write_npz

    arrays = {k: np.concatenate(v) for k, v in columns.items()}
    write_npz(path, {"run": np.array(run_id), "keys": np.array(keys), **arrays})
