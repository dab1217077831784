"""The evaluation sets users compare models on, each with the protocol its paper reports it with.

A name resolves under a data root (``--data-root`` or ``$HMR_DATA_ROOT``), laid out as 4D-Humans' and
SMPLer's releases unpack; a path is used as it is (an ``.npz`` written by ``hmr data synth`` is recognised by
its ``body_model`` entry, a ``.yaml`` is a SMPLer TSV set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hmr.data import DatasetLayoutError, DatasetSpec
from hmr.data.datasets import SYNTH_META, SYNTH_SPLITS

DATA_ROOT_ENV = "HMR_DATA_ROOT"


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: str  # under the data root
    protocol: str  # a key of hmr.evaluation.evaluate.PROTOCOLS
    source: str  # where users get it (the error says so when it is missing)


_HMR2 = "4D-Humans' evaluation data (hmr2_evaluation_data/) and the dataset's own images"
_SMPLER = "SMPLer/METRO's TSV release (datarelease.blob.core.windows.net/metro/datasets)"

EVAL_SETS = {
    s.name: s
    for s in (
        EvalSet("3DPW-TEST", "hmr2_evaluation_data/3dpw_test.npz", "hmr2_3d", _HMR2),
        EvalSet("H36M-VAL-P2", "hmr2_evaluation_data/h36m_val_p2.npz", "hmr2_3d", _HMR2),
        EvalSet("LSP-EXTENDED", "hmr2_evaluation_data/hr-lspet_train.npz", "hmr2_pck", _HMR2),
        EvalSet("COCO-VAL", "hmr2_evaluation_data/coco_val.npz", "hmr2_pck", _HMR2),
        EvalSet("POSETRACK-VAL", "hmr2_evaluation_data/posetrack_2018_val.npz", "hmr2_pck", _HMR2),
        EvalSet("3DPW-TEST-SMPLER", "3dpw/test_has_gender.yaml", "smpler_3d", _SMPLER),
        EvalSet("H36M-VAL-P2-SMPLER", "human3.6m/valid.protocol2.yaml", "smpler_3d", _SMPLER),
    )
}
_BY_FILE = {Path(s.path).name: s for s in EVAL_SETS.values()}


def resolve_set(name_or_path: str, data_root: str | os.PathLike | None = None, image_root: str = "") -> tuple[DatasetSpec, str, str]:  # fmt: skip
    """``(DatasetSpec, protocol, name)`` for a set name of :data:`EVAL_SETS` or a dataset path."""
    if name_or_path.upper() in EVAL_SETS:
        s = EVAL_SETS[name_or_path.upper()]
        root = data_root or os.environ.get(DATA_ROOT_ENV)
        if not root:
            raise DatasetLayoutError(
                f"{s.name}: no data root; pass --data-root DIR (or set ${DATA_ROOT_ENV}) holding {s.path} from {s.source}"
            )
        path = Path(root).expanduser() / s.path
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: not found ({s.name} is {s.path} under the data root, from {s.source})")
        return DatasetSpec(path=str(path), name=s.name, image_root=image_root), s.protocol, s.name
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(EVAL_SETS)
        raise DatasetLayoutError(f"{name_or_path}: no such file and not an evaluation set name ({known})")
    if path.is_dir() and (path / SYNTH_META).is_file():  # a folder written by hmr data synth
        path = path / SYNTH_SPLITS["val"]
    spec = DatasetSpec(path=str(path), image_root=image_root)
    if path.suffix in (".yaml", ".yml"):
        return spec, "smpler_3d", path.stem
    if path.suffix == ".npz":
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:  # the names only: is it synthetic (does it carry a body model)?
                synthetic = "body_model.npy" in z.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise DatasetLayoutError(f"{path}: not a readable .npz ({err})") from None
        if synthetic:
            return spec, "synthetic", path.stem
        known_set = _BY_FILE.get(path.name)
        return spec, known_set.protocol if known_set else "hmr2_3d", known_set.name if known_set else path.stem
    raise DatasetLayoutError(f"{path}: evaluation reads a HMR 2.0 .npz, a SMPLer .yaml or a synthetic set's .npz")
