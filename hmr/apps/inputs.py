"""What ``hmr demo`` is given: input files and folders, their output names, and user boxes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hmr.apps.errors import error_line
from hmr.detection import Detections
from hmr.io.images import IMAGE_EXTS
from hmr.io.video import VIDEO_EXTS


def collect_inputs(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand folders recursively (sorted) into image and video files; given files are kept as they are
    so that a wrong one gets its own clear error. Raises FileNotFoundError for missing paths."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return out


def parse_boxes(spec: str | None) -> dict | list | None:
    """``--boxes``: a JSON file with a list of [x1, y1, x2, y2] (every input) or {input name or stem: list},
    or boxes inline as "x1,y1,x2,y2;x1,y1,x2,y2"."""
    if spec is None:
        return None
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # ValueError: not JSON, or not text at all
            raise ValueError(f"--boxes {spec}: cannot read it as JSON ({error_line(err)})") from None
    else:
        try:
            data = [[float(v) for v in box.split(",")] for box in spec.split(";") if box.strip()]
        except ValueError:
            raise ValueError(f"--boxes {spec!r}: expected x1,y1,x2,y2[;x1,y1,x2,y2...] or a .json file") from None
    try:
        if isinstance(data, dict):
            return {k: Detections.from_boxes(v) for k, v in data.items()}
        return Detections.from_boxes(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"--boxes {spec}: expected boxes x1,y1,x2,y2 ({error_line(err)})") from None


def boxes_for(boxes, path: Path) -> Detections | None:
    if boxes is None or isinstance(boxes, Detections):
        return boxes
    for key in (str(path), path.name, path.stem):
        if key in boxes:
            return boxes[key]
    return None


def output_stems(inputs: list[Path], roots: list[Path]) -> list[str]:
    """Output name (relative path without suffix) per input: folders keep their tree; names that would
    collide (a.jpg and a.png) get their extension appended (a_jpg, a_png)."""
    stems = []
    for p in inputs:
        root = next((r for r in roots if r.is_dir() and p.is_relative_to(r)), None)
        rel = p.relative_to(root) if root is not None else Path(p.name)
        stems.append(rel.with_suffix(""))
    counts: dict[Path, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [
        (s.with_name(f"{s.name}_{p.suffix.lstrip('.').lower()}") if counts[s] > 1 else s).as_posix()
        for s, p in zip(stems, inputs, strict=True)
    ]
