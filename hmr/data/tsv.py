"""Reader for the SMPLer / METRO TSV datasets (Human3.6M, 3DPW, the mixed "Tax-H36m-coco40k-Muco-UP-Mpii").

Format. A dataset is opened by its YAML file: ``img``, ``label``, optional ``hw`` and ``linelist``, paths
relative to the YAML's folder. A TSV holds one record per line, tab-separated; its sibling ``.lineidx``
(``name.tsv`` -> ``name.lineidx``) lists the byte offset of each line, one decimal integer a line.

- ``img`` row: ``key \\t ... \\t base64(JPEG)`` (the image is the last column).
- ``label`` row: ``key \\t JSON list``; its first element is the label dict.
- ``hw`` row: ``key \\t [{"height": H, "width": W}]`` (or ``H W``).
- ``linelist``: one img/label row index a line, the dataset's rows in order (absent: every row).
- ``composite: true``: ``img`` / ``label`` / ``hw`` are lists of TSVs (the sources) and ``linelist`` is a
  TSV of ``source_index \\t row_index`` pairs.

Schema (:class:`hmr.data.sample.Annotation`, the image's pixels). The 24 SPIN joints ``2d_joints`` (24, 3)
(x, y px, conf) and ``3d_joints`` (24, 4) (metres, conf), either possibly nested (1, 24, k), go to the
:data:`~hmr.data.sample.J24_TO_44` slots of the 44 keypoints (the other 20 are zero with confidence 0);
their confidences are zeroed when ``has_2d_joints`` / ``has_3d_joints`` is 0. ``center`` -> center,
``scale`` * 200 -> size, ``pose`` [:3] / [3:] -> global_orient / body_pose, ``betas`` -> betas, ``has_smpl``
-> the three SMPL ``has_`` flags. There is no camera (focal_length, principal_point None) and no mask.
The schema has no gender: :meth:`TsvDataset.gender` gives it ("m", "f" or "n").

A missing ``.lineidx`` is built in memory by one scan of its TSV, never written beside it (dataset folders
are often read-only or shared); :func:`write_lineidx` writes one, atomically, for large TSVs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path

import numpy as np
import yaml

from hmr.data.errors import BadSample, DatasetLayoutError
from hmr.data.fields import array
from hmr.data.sample import J24_TO_44, NUM_KEYPOINTS, Annotation
from hmr.data.tars import decode_image

log = logging.getLogger("hmr.data")

SCALE_TO_PIXELS = 200.0  # SMPLer/SPIN's box size convention: side = scale * 200 px
_FULL_CHECK_BYTES = 64 << 20  # TSVs up to this size have every lineidx offset checked against a scan
_SPOT_CHECKS = 64  # larger TSVs: this many offsets checked to start a line, plus the last one exactly
_CHUNK = 16 << 20


def scan_lineidx(tsv_path: str | os.PathLike) -> np.ndarray:
    """(N,) int64 byte offsets of the N lines of a TSV (a last line without a newline counts)."""
    path = Path(tsv_path)
    size = path.stat().st_size
    starts = [np.zeros(1, np.int64)] if size else []
    with open(path, "rb") as f:
        pos = 0
        while chunk := f.read(_CHUNK):
            nl = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10).astype(np.int64) + pos + 1
            starts.append(nl)
            pos += len(chunk)
    offsets = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    return offsets[offsets < size]  # the position after a final newline starts no line


def write_lineidx(tsv_path: str | os.PathLike) -> Path:
    """Write the ``.lineidx`` beside a TSV (via a temporary file and a rename); returns its path."""
    path = Path(tsv_path)
    out = _lineidx_path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("".join(f"{o}\n" for o in scan_lineidx(path).tolist()))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _lineidx_path(tsv: Path) -> Path:
    return tsv.with_suffix(".lineidx")  # SMPLer: splitext(tsv)[0] + ".lineidx"


class _TsvFile:
    """Random access to the lines of one TSV. The file is opened on first read in each process (DataLoader
    workers forked from a parent that already read get their own handle); reads are ``pread`` of the line's
    exact byte span, so they never depend on a shared file offset."""

    def __init__(self, path: Path, yaml_path: Path, role: str):
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: TSV file not found (the {role!r} of {yaml_path})")
        self.path = path
        self.size = path.stat().st_size
        self.offsets = _load_offsets(path, self.size)
        self._ends = np.append(self.offsets[1:], self.size) if len(self.offsets) else self.offsets
        self._fh = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self):  # a spawned worker opens its own handle
        return {**self.__dict__, "_fh": None, "_pid": None}

    def line(self, row: int) -> bytes:
        """Line ``row`` without its line ending; a file that cannot be read there is ``unreadable_shard``."""
        start, length = int(self.offsets[row]), int(self._ends[row] - self.offsets[row])
        try:
            if self._fh is None or self._pid != os.getpid():
                self._fh, self._pid = open(self.path, "rb"), os.getpid()  # kept open for the next reads
            data = os.pread(self._fh.fileno(), length, start)
        except OSError as e:
            raise BadSample("unreadable_shard", f"{self.path}: cannot read line {row}: {e.strerror or e}") from None
        if len(data) != length:
            raise BadSample("unreadable_shard", f"{self.path}: line {row} is cut short (the file shrank)")
        return data.rstrip(b"\r\n")


def _load_offsets(tsv: Path, size: int) -> np.ndarray:
    idx = _lineidx_path(tsv)
    if not idx.is_file():
        log.info("%s has no %s; indexing it in memory", tsv, idx.name)
        return scan_lineidx(tsv)
    bad = f"{idx}: invalid line index for {tsv.name}"
    try:
        lines = [s.strip() for s in idx.read_text(encoding="ascii").splitlines()]
    except (OSError, UnicodeDecodeError):
        raise DatasetLayoutError(f"{bad}: expected ASCII decimal byte offsets, one a line") from None
    while lines and not lines[-1]:
        lines.pop()
    try:
        offsets = np.array([int(s) for s in lines], dtype=np.int64)
    except (ValueError, OverflowError):
        k = next(i for i, s in enumerate(lines) if not (s.isascii() and s.isdigit() and len(s) < 19))
        raise DatasetLayoutError(f"{bad}: line {k + 1} is {lines[k][:40]!r}, expected a byte offset") from None
    if size == 0 or len(offsets) == 0:
        if size or len(offsets):
            raise DatasetLayoutError(f"{bad}: {len(offsets)} offsets for a TSV of {size} bytes")
        return offsets
    if offsets[0] != 0 or np.any(np.diff(offsets) <= 0) or offsets[-1] >= size:
        raise DatasetLayoutError(f"{bad}: offsets must start at 0 and increase below the TSV's {size} bytes")
    if size <= _FULL_CHECK_BYTES:
        true = scan_lineidx(tsv)
        if len(true) != len(offsets):
            raise DatasetLayoutError(f"{bad}: {len(offsets)} offsets but the TSV has {len(true)} lines")
        if not np.array_equal(true, offsets):
            k = int(np.flatnonzero(true != offsets)[0])
            raise DatasetLayoutError(f"{bad}: offset {k + 1} is {offsets[k]}, line {k + 1} starts at {true[k]}")
        return offsets
    # Large TSV: the last offset must start the last line, and a sample of offsets must start lines.
    with open(tsv, "rb") as f:
        for k in np.unique(np.linspace(1, len(offsets) - 1, _SPOT_CHECKS).astype(int)) if len(offsets) > 1 else ():
            f.seek(int(offsets[k]) - 1)
            if f.read(1) != b"\n":
                raise DatasetLayoutError(f"{bad}: offset {k + 1} ({offsets[k]}) does not start a line")
        f.seek(int(offsets[-1]))
        pos = int(offsets[-1])
        while chunk := f.read(1 << 20):
            nl = chunk.find(b"\n")
            if nl >= 0 and pos + nl + 1 < size:
                raise DatasetLayoutError(f"{bad}: {len(offsets)} offsets but the TSV has more lines")
            pos += len(chunk)
    return offsets


class _Source:
    """The img / label / hw TSVs of one (sub)dataset, row-aligned."""

    def __init__(self, root: Path, yaml_path: Path, img: str, label: str, hw: str | None, where: str = ""):
        self.img = _TsvFile(root / img, yaml_path, f"img{where}")
        self.label = _TsvFile(root / label, yaml_path, f"label{where}")
        self.hw = _TsvFile(root / hw, yaml_path, f"hw{where}") if hw is not None else None
        self.rows = min(len(self.img), len(self.label), *([len(self.hw)] if self.hw is not None else []))


class TsvDataset:
    """Map-style reader of one SMPLer/METRO TSV dataset, opened by its YAML file.

    ``read(i)`` gives the RGB uint8 (H, W, 3) image and the :class:`Annotation` of row ``i``; a bad row
    raises :class:`BadSample`. A wrong layout raises :class:`DatasetLayoutError` when the dataset is opened.
    ``name`` (the annotations' ``dataset``) defaults to ``<yaml folder>/<yaml stem>``, e.g. ``3dpw/test``.
    """

    def __init__(self, yaml_path: str | os.PathLike, name: str | None = None):
        path = Path(yaml_path)
        self.yaml_path = path
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: dataset YAML not found (expected a file with img/label/linelist)")
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DatasetLayoutError(f"{path}: not a readable YAML file ({first})") from None
        if not isinstance(spec, dict):
            raise DatasetLayoutError(f"{path}: expected a YAML mapping with keys img, label (hw, linelist)")
        missing = [k for k in ("img", "label") if spec.get(k) is None]
        if missing:
            raise DatasetLayoutError(f"{path}: missing key {missing[0]!r} (expected img, label, hw, linelist)")
        self.name = name if name is not None else (f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem)
        self.composite = bool(spec.get("composite", False))
        root = path.parent
        linelist = spec.get("linelist")
        if linelist is not None and not isinstance(linelist, str):
            raise DatasetLayoutError(f"{path}: 'linelist' must be one TSV path, got {type(linelist).__name__}")
        if self.composite:
            self._sources = self._open_composite(spec, root)
            if linelist is None:
                raise DatasetLayoutError(f"{path}: a composite dataset needs a 'linelist' of source/row pairs")
        else:
            for k in ("img", "label", "hw"):
                if spec.get(k) is not None and not isinstance(spec[k], str):
                    raise DatasetLayoutError(f"{path}: {k!r} must be a TSV path (lists need 'composite: true')")
            self._sources = [_Source(root, path, spec["img"], spec["label"], spec.get("hw"))]
        self._rows = self._read_linelist(root / linelist) if linelist is not None else None
        if self._rows is None:
            n = self._sources[0].rows
            self._rows = np.stack([np.zeros(n, np.int64), np.arange(n, dtype=np.int64)], axis=1)
        if len(self._rows) == 0:
            raise DatasetLayoutError(f"{path}: the dataset has no rows (expected at least one img/label row)")

    def _open_composite(self, spec: dict, root: Path) -> list[_Source]:
        lists = {k: spec.get(k) for k in ("img", "label", "hw")}
        for k, v in lists.items():
            if v is not None and not (isinstance(v, list) and v and all(isinstance(p, str) for p in v)):
                raise DatasetLayoutError(f"{self.yaml_path}: {k!r} of a composite dataset must be a list of TSV paths")
        n = len(lists["img"])
        if len(lists["label"]) != n or (lists["hw"] is not None and len(lists["hw"]) != n):
            raise DatasetLayoutError(f"{self.yaml_path}: composite img, label and hw lists differ in length")
        hw = lists["hw"] or [None] * n
        return [_Source(root, self.yaml_path, lists["img"][s], lists["label"][s], hw[s], f"[{s}]") for s in range(n)]

    def _read_linelist(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise DatasetLayoutError(f"{path}: linelist TSV not found (the 'linelist' of {self.yaml_path})")
        want = 2 if self.composite else 1
        what = "source_index<TAB>row_index" if self.composite else "a row index"
        rows = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise DatasetLayoutError(f"{path}: unreadable linelist (expected {what} a line)") from None
        for k, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            parts = line.strip().split("\t")
            try:
                pair = (int(parts[0]), int(parts[1])) if want == 2 else (0, int(parts[0]))
            except (ValueError, IndexError):
                raise DatasetLayoutError(f"{path}: line {k + 1} is {line[:40]!r}, expected {what}") from None
            src, row = pair
            if not 0 <= src < len(self._sources) or not 0 <= row < self._sources[src].rows:
                raise DatasetLayoutError(f"{path}: line {k + 1} ({line.strip()!r}) points outside the img/label TSVs")
            rows.append(pair)
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"TsvDataset({str(self.yaml_path)!r}, {len(self)} rows)"

    def _locate(self, index: int) -> tuple[_Source, int]:
        n = len(self._rows)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} rows")
        src, row = self._rows[index]
        return self._sources[int(src)], int(row)

    def source_row(self, index: int) -> tuple[int, int]:
        """(source TSV index, row in it) of dataset row ``index`` (source 0 unless composite)."""
        src, row = self._rows[index]
        return int(src), int(row)

    def read(self, index: int) -> tuple[np.ndarray, Annotation]:
        """RGB uint8 (H, W, 3) image and annotation of row ``index``."""
        src, row = self._locate(index)
        label_key, label = self._label(src, row)
        key, image = _decode_image_row(src.img.line(row), src.img.path, row)
        if key != label_key:
            raise BadSample("bad_value", f"{src.img.path}: row {row} key {key!r} but the label row's is {label_key!r}")
        return image, self._annotation(label, key, src.label.path, row)

    def annotation(self, index: int) -> Annotation:
        """The annotation of row ``index`` without decoding its image."""
        src, row = self._locate(index)
        key, label = self._label(src, row)
        return self._annotation(label, key, src.label.path, row)

    def gender(self, index: int) -> str:
        """The label's ``gender`` as "m", "f" or "n" (neutral: absent or not recognised)."""
        src, row = self._locate(index)
        g = self._label(src, row)[1].get("gender")
        g = g.strip().lower() if isinstance(g, str) else ""
        return {"m": "m", "male": "m", "f": "f", "female": "f"}.get(g, "n")

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of row ``index`` from the hw TSV (decoding the image when there is none)."""
        src, row = self._locate(index)
        if src.hw is None:
            return self.read(index)[0].shape[:2]
        return _parse_hw(src.hw.line(row), src.hw.path, row)

    @staticmethod
    def _label(src: _Source, row: int) -> tuple[str, dict]:
        where = f"{src.label.path}: row {row}"
        try:
            key, _, text = src.label.line(row).decode("utf-8").partition("\t")
            value = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise BadSample("bad_value", f"{where}: label is not key<TAB>JSON ({type(e).__name__})") from None
        if isinstance(value, list):
            if not value:
                raise BadSample("missing_key", f"{where}: empty label list")
            value = value[0]
        if not isinstance(value, dict):
            raise BadSample("bad_value", f"{where}: label is {type(value).__name__}, expected a dict")
        return key, value

    def _annotation(self, label: dict, key: str, path: Path, row: int) -> Annotation:
        where = f"{path}: row {row} ({key})"
        center = array(label, "center", (2,), where)
        scale = float(array(label, "scale", (1,), where)[0])
        if scale <= 0:
            raise BadSample("bad_value", f"{where}: scale {scale} is not positive")
        kps = []
        for name, flag, k in (("2d_joints", "has_2d_joints", 3), ("3d_joints", "has_3d_joints", 4)):
            # Without its flag: 2D joints are always needed, 3D joints count when present.
            has = _flag(label, flag, 1.0 if name == "2d_joints" or name in label else 0.0, where)
            joints = _optional(has, label, name, (24, k), where)
            out = np.zeros((NUM_KEYPOINTS, k), np.float32)
            out[list(J24_TO_44)] = joints
            out[:, -1] *= has
            kps.append(out)
        has_smpl = _flag(label, "has_smpl", 0.0, where)
        pose = _optional(has_smpl, label, "pose", (72,), where)
        betas = _optional(has_smpl, label, "betas", (10,), where)
        return Annotation(
            keypoints_2d=kps[0], keypoints_3d=kps[1], center=center.astype(np.float32),
            size=scale * SCALE_TO_PIXELS, global_orient=pose[:3].copy(), body_pose=pose[3:].copy(), betas=betas,
            has_global_orient=has_smpl, has_body_pose=has_smpl, has_betas=has_smpl,
            dataset=self.name, key=key,
        )  # fmt: skip


def _decode_image_row(line: bytes, path: Path, row: int) -> tuple[str, np.ndarray]:
    where = f"{path}: row {row}"
    head, sep, b64 = line.rpartition(b"\t")
    if not sep:
        raise BadSample("bad_value", f"{where}: expected key<TAB>base64 image, found one column")
    try:
        key = head.split(b"\t", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadSample("bad_value", f"{where}: key is not UTF-8") from None
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadSample("corrupt_image", f"{where} ({key}): image is not valid base64") from None
    return key, decode_image(data, f"{where} ({key})")


def _parse_hw(line: bytes, path: Path, row: int) -> tuple[int, int]:
    text = line.decode("utf-8", "replace").partition("\t")[2].strip()
    try:
        value = json.loads(text)
        value = value[0] if isinstance(value, list) else value
        h, w = (value["height"], value["width"]) if isinstance(value, dict) else (None, None)
    except (ValueError, KeyError, IndexError, TypeError):
        h = w = None
    if h is None and len(text.split()) == 2:
        h, w = text.split()
    try:
        return int(h), int(w)
    except (TypeError, ValueError):
        raise BadSample("bad_value", f"{path}: row {row} hw is {text[:40]!r}, expected height/width") from None


def _optional(has: float, label: dict, name: str, shape, where: str) -> np.ndarray:
    """A field its ``has_`` flag gates: required when the flag is set; otherwise kept when valid, else zeros
    (unused ground truth must not carry NaN into the losses, where 0 * NaN is NaN)."""
    try:
        return array(label, name, shape, where)
    except BadSample:
        if has:
            raise
        return np.zeros(shape, np.float32)


def _flag(label: dict, name: str, default: float, where: str) -> float:
    """A 0/1 ``has_`` flag (a number, bool or one-element list); ``default`` when absent."""
    value = label.get(name)
    if value is None:
        return default
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise BadSample("bad_value", f"{where}: {name!r} is {value!r}, expected 0 or 1") from None
    if a.size != 1:
        raise BadSample("bad_value", f"{where}: {name!r} is {value!r}, expected 0 or 1")
    if not np.isfinite(a[0]):
        raise BadSample("non_finite", f"{where}: {name!r} is {a[0]}")
    return 1.0 if a[0] > 0 else 0.0
