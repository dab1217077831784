"""Reading videos: frames of a file or camera through OpenCV, and telling videos from images by content."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hmr.io.images import IMAGE_MAGIC, MAX_PIXELS, check_pixels

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def is_video(path: Path) -> bool:
    """By content when the first bytes are a common image or video signature (a misnamed file is still read
    right), else by extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""
    if head.startswith(IMAGE_MAGIC) or head[8:12] == b"WEBP":
        return False
    if head[4:8] == b"ftyp" and head[8:12] not in (b"avif", b"heic", b"mif1") or head[8:12] == b"AVI ":
        return True
    return head.startswith(b"\x1a\x45\xdf\xa3") or path.suffix.lower() in VIDEO_EXTS


class CaptureFrames:
    """RGB frames of an OpenCV capture, iterated once; ``declared``: the frame count the file declares (None
    when unknown, as for cameras)."""

    def __init__(self, cap, first: np.ndarray | None = None):
        import cv2

        self.cap, self.first = cap, first
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared = int(n) if 0 < n < 1e9 else None  # cameras and some streams report 0, -1 or garbage

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            ok, frame = (True, self.first) if self.first is not None else self.cap.read()
            while ok:
                yield np.ascontiguousarray(frame[..., ::-1])
                ok, frame = self.cap.read()
        finally:
            self.cap.release()


def _capture(source):
    """cv2.VideoCapture without FFmpeg's and OpenCV's own log lines (we report failures ourselves), unless the
    user set their levels."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2.VideoCapture(source)


def read_video(path: Path, max_pixels: int | None = MAX_PIXELS) -> tuple[CaptureFrames, float]:
    """RGB frames of a video file and its frame rate; ValueError when it cannot be decoded or its frames are
    above ``max_pixels``."""
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"{path}: video not found")
    cap = _capture(str(path))
    try:
        if cap.isOpened():  # before the first frame is decoded
            check_pixels(
                path, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), max_pixels
            )
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            raise ValueError(f"{path}: cannot read video (empty, damaged or an unsupported codec)")
    except BaseException:
        cap.release()
        raise
    return CaptureFrames(cap, first), float(cap.get(cv2.CAP_PROP_FPS) or 30.0)


def camera_frames(index: int) -> tuple[CaptureFrames, float]:
    """Frames of camera ``index`` (OpenCV), RGB."""
    import cv2

    cap = _capture(index)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera {index} (no such device, or no permission)")
    return CaptureFrames(cap), float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
