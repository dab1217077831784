"""Reading images: any pixel format Pillow decodes, as RGB uint8, with a size limit checked before decoding."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# Larger images (and video frames) are refused from their header, before decoding: a 450 KB PNG can declare
# 12000x12000 pixels and take 8 GB and 40 s to decode. ``hmr demo --max-pixels``; 0 or None: no limit.
MAX_PIXELS = 50_000_000
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
_PILLOW_LIMIT = threading.Lock()


def check_pixels(path, width: int, height: int, max_pixels: int | None) -> None:
    """ValueError naming ``path`` when width x height exceeds ``max_pixels``."""
    if max_pixels and width * height > max_pixels:
        raise ValueError(
            f"{path}: too large: {width}x{height} pixels ({width * height / 1e6:.0f} MP) is above the limit of "
            f"{max_pixels / 1e6:g} MP (--max-pixels)"
        )


def read_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Image file -> RGB uint8 (H, W, 3): EXIF orientation applied, 16-bit and float images scaled to 8 bits,
    transparency composited over white. Raises ValueError for files that are empty, truncated, not images or
    above ``max_pixels`` (checked before decoding), FileNotFoundError when missing."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not an image")
    try:
        # Pillow's own bomb check raises (or warns) inside open() before the size can be read; ours replaces it.
        with _PILLOW_LIMIT:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except UnidentifiedImageError:
        raise ValueError(
            f"{path}: not an image file PIL can read (supported: {', '.join(sorted(IMAGE_EXTS))})"
        ) from None
    except Exception as err:  # malformed headers raise anything from SyntaxError to struct.error
        raise ValueError(f"{path}: damaged image ({err or type(err).__name__})") from None
    with im:
        check_pixels(path, *im.size, max_pixels)
        try:
            im.load()
        except Exception as err:
            raise ValueError(f"{path}: damaged or truncated image ({err or type(err).__name__})") from None
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a damaged EXIF block should not lose the picture: keep it unrotated
            pass
        if im.mode in ("I", "F") or im.mode.startswith("I;16"):
            return as_rgb(np.asarray(im))  # convert("RGB") would clip these at 255 (16-bit -> white)
        if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            return as_rgb(np.asarray(im.convert("RGBA")))
        return np.asarray(im.convert("RGB"))


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Contiguous RGB uint8 (H, W, 3) from RGB, RGBA, grayscale or grayscale+alpha arrays of any number type
    (16-bit and floats in [0, 1] scaled to 8 bits); alpha composited over white."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    if image.shape[2] in (2, 4):
        alpha = image[..., -1:].astype(np.float32) / 255
        image = (image[..., :-1] * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """uint16 (or any values above 255) as 16-bit, floats and bools up to 1 as [0, 1], the rest as 8-bit."""
    sixteen_bit = image.dtype.kind == "u" and image.dtype.itemsize == 2
    unit = image.dtype.kind in "fb"
    image = np.nan_to_num(image.astype(np.float32))
    hi = float(image.max())
    peak = 65535.0 if sixteen_bit or hi > 255 else 1.0 if unit and hi <= 1 else 255.0
    return (np.clip(image, 0, peak) * (255 / peak) + 0.5).astype(np.uint8)
