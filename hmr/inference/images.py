"""Reading images and finding the inputs of ``hmr demo`` (files, folders, videos)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Image file -> RGB uint8 (H, W, 3), EXIF orientation applied. Raises ValueError for files that are
    empty, truncated or not images, FileNotFoundError when missing."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError(
            f"{path}: not an image file PIL can read (supported: {', '.join(sorted(IMAGE_EXTS))})"
        ) from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"{path}: damaged or truncated image ({err})") from None


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept RGB uint8 (H, W, 3), RGBA or grayscale arrays; return contiguous RGB uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


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


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS
