"""Where ``hmr demo`` puts one input's outputs: pictures, and files published atomically from a staging folder,
resumable by the input's content hash, with stale files of earlier runs removed (docs/outputs.md)."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from hmr.apps.errors import warn
from hmr.io.exports import MESH_FORMATS
from hmr.pipeline import FrameResult


def palette(i: int):
    from hmr.render import DEFAULT_PALETTE

    return DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]


class Painter:
    """Overlay and side-view pictures (the calling thread's renderer per image size). Rendering failures (no
    OpenGL) are reported once and the pictures skipped, the rest of the outputs still written."""

    def __init__(self):
        self.available = True

    def _renderer(self, w: int, h: int):
        from hmr.render import RenderUnavailableError, thread_renderer

        try:
            return thread_renderer(w, h)
        except RenderUnavailableError as err:
            self.available = False
            warn(f"{err}; overlay and side-view pictures are skipped")
            return None

    def overlay(self, image: np.ndarray, frame: FrameResult, meshes: list[tuple[int, np.ndarray]], faces) -> np.ndarray:
        """Meshes (colour index: person index or track id, camera-frame vertices with translation) over the
        image; boxes of people without a mesh drawn in their colour."""
        import cv2

        out = image.copy()
        r = self._renderer(*frame.image_size) if self.available and meshes else None
        if r is not None:
            out = r.overlay(out, [v for _, v in meshes], faces, frame.camera, colors=[palette(i) for i, _ in meshes])
        for i, p in enumerate(frame.people):
            if p.mesh is None:
                c = tuple(int(255 * x) for x in palette(i if p.track_id is None else p.track_id))
                cv2.rectangle(out, tuple(int(v) for v in p.box[:2]), tuple(int(v) for v in p.box[2:]), c, 2)
        return out

    def side(self, frame: FrameResult, meshes: list[tuple[int, np.ndarray]], faces) -> np.ndarray | None:
        r = self._renderer(*frame.image_size) if self.available and meshes else None
        if r is None:
            return None
        return r.side_view([v for _, v in meshes], faces, frame.camera, colors=[palette(i) for i, _ in meshes])


# Staging folders are named .<name>.partial-<host>-<pid>-<random>: a later run removes those whose process is gone.
_STAGING = re.compile(r"\.partial-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


@contextlib.contextmanager
def staging(out_dir: Path, name: str):
    """A hidden folder in ``out_dir`` for one input's new files. On success the previous run's JSON is removed
    first (an interruption then leaves the input not done, never old and new files under one JSON), the new
    files move in, the previous run's files the new one did not write are removed, and the JSON comes last.
    Any OSError becomes one naming ``out_dir`` (not the hidden folder)."""
    tmp = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.partial-{socket.gethostname()}-{os.getpid()}-"))
        yield tmp
        new = {f.name for f in tmp.iterdir()}
        stale = previous_files(out_dir, name) - new
        record = f"{name}.json"
        (out_dir / record).unlink(missing_ok=True)
        for f in sorted(new - {record}):
            os.replace(tmp / f, out_dir / f)
        for f in stale:
            (out_dir / f).unlink(missing_ok=True)
        if record in new:
            os.replace(tmp / record, out_dir / record)
    except OSError as err:
        raise OSError(f"cannot write the outputs in {out_dir}: {err.strerror or err}") from err
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def previous_files(out_dir: Path, name: str) -> set[str]:
    """An earlier run's files of output ``name`` in ``out_dir``: those its JSON lists (plain names of this
    output only) and any per-person or per-track file (``<name>_person<N>.<format>``, ``..._skinned.glb``,
    ``<name>_track<N>.glb|bvh``) left by an interrupted run."""
    person = re.compile(rf"{re.escape(name)}_(person\d+(\.({'|'.join(MESH_FORMATS)}|bvh)|_skinned\.glb)|track\d+\.(glb|bvh))")
    found = {f.name for f in out_dir.glob(f"{glob.escape(name)}_*") if person.fullmatch(f.name)}
    rec = read_record(out_dir / f"{name}.json") or {}
    listed = [rec.get("files")] + [p.get("files") for p in rec.get("people") or [] if isinstance(p, dict)]
    for files in listed:
        if isinstance(files, dict):
            found |= {f for f in files.values() if isinstance(f, str) and Path(f).name == f
                      and f.startswith((f"{name}.", f"{name}_"))}  # fmt: skip
    return found


def read_record(path: Path) -> dict | None:
    """A ``<stem>.json`` record, or None when missing or unreadable."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` and write a test file in it, before any work; ValueError (one line) when impossible."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".hmr-write-test-")
        try:
            os.write(fd, b"hmr")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def remove_stale_staging(out: Path) -> int:
    """Remove staging folders under ``out`` left by killed runs on this host (their process is gone); those of
    running processes are left alone. Returns how many were removed."""
    removed = 0
    for d in out.rglob(".*.partial-*"):
        m = _STAGING.search(d.name)
        if m and d.is_dir() and m["host"] == socket.gethostname() and not _alive(int(m["pid"])):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
