"""Hostile inputs for ``hmr demo`` and ``hmr.predict`` (issue 12): every bad file is made here in tmp_path.

Every case checks the exit code, that stderr holds exactly the expected one-line messages naming the file (no
traceback), and that the output folder holds no half-written files. Most runs go in-process through
``hmr.cli.main`` with one shared pipeline; bad inputs fail before inference, and the good input beside them
is a small picture with a user box (no detection, no fit), so they are cheap. Kill/SIGTERM/Ctrl-C run
``hmr demo`` in a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hmr.apps import demo as demo_mod
from hmr.apps import outputs as outputs_mod
from hmr.cli import main
from hmr.io import exports
from hmr.io.images import read_image
from hmr.pipeline import Pipeline, PipelineConfig
from tests.test_demo import FAST_FIT

ROOT = Path(__file__).resolve().parent.parent
BASKETBALL = ROOT / "examples/basketball1.png"
ASTRONAUT = ROOT / "examples/astronaut.jpg"
CLIP = ROOT / "tests/data/vtest_clip.mp4"
BOX = "4,4,40,44"  # a user box: the person is "box only" (no landmarks, no fit) -> a cheap but complete run


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(PipelineConfig(fitting=FAST_FIT))


@pytest.fixture()
def cli(pipeline, monkeypatch, capfd):
    """``hmr demo ARGS`` in-process with the shared pipeline -> (exit code, stdout, stderr); fd-level capture
    so that OpenCV's and FFmpeg's own log lines would show too."""
    monkeypatch.setattr(demo_mod, "Pipeline", lambda *a, **kw: pipeline)
    capfd.readouterr()

    def run(*args, debug=False):
        rc = main([*(["--debug"] if debug else []), "demo", *map(str, args)])
        out, err = capfd.readouterr()
        return rc, out, err

    return run


# ------------------------------------------------------------------------------------------ helpers
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(w: int, h: int) -> bytes:
    """A 150-byte PNG declaring w x h RGB pixels (valid IHDR CRC, a tiny IDAT)."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def jpeg_header(w: int, h: int) -> bytes:
    """A baseline JPEG header (SOF0, SOS) declaring w x h, with no real scan data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x00" * 32 + b"\xff\xd9"


def tiny_video(path: Path, frames: int = 30) -> Path:
    """A 64x48 mp4 of noise (nobody in it: detection only), index first (faststart) so that a cut copy still
    opens."""
    import imageio.v2 as imageio

    w = imageio.get_writer(path, fps=10, codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
                           output_params=["-movflags", "+faststart"])  # fmt: skip
    for i in range(frames):
        w.append_data(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w.close()
    return path


def wall(path: Path, size=(64, 48)) -> Path:
    """A small plain picture (the good input beside bad ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 170, np.uint8)).save(path)
    return path


def assert_clean(out: Path) -> None:
    """No staging folders or temporary files; every JSON parses, every npz loads completely."""
    if not out.exists():
        return
    for f in out.rglob("*"):
        assert not f.name.startswith("."), f"left over: {f}"
        if f.suffix == ".json":
            assert isinstance(json.loads(f.read_text()), dict)
        elif f.suffix == ".npz":
            with np.load(f) as z:
                for k in z.files:
                    z[k]
    for rec_path in out.rglob("*.json"):
        rec = json.loads(rec_path.read_text())
        for name in rec["files"].values():
            assert (rec_path.parent / name).is_file(), f"{rec_path} lists missing {name}"


def assert_lines(err: str, *expected: tuple[str, object, str]) -> None:
    """stderr is exactly these lines: (level, path or None, text): ``hmr: LEVEL: [PATH: ]...TEXT...``."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == len(expected), err
    for line, (level, path, text) in zip(lines, expected, strict=True):
        assert line.startswith(f"hmr: {level}: " + (f"{path}: " if path is not None else "")), line
        assert text in line, line


def summary(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("hmr demo: "))


# --------------------------------------------------------------------------------- bad input files
def _text(p):
    p.write_text("hello, I am not a picture\n")


def _cut(src, frac=0.34):
    return lambda p: p.write_bytes(src.read_bytes()[: int(len(src.read_bytes()) * frac)])


def _crc(p):
    data = bytearray(BASKETBALL.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside an IDAT chunk: its CRC no longer matches
    p.write_bytes(bytes(data))


BAD = {
    # name: (file name, maker, message text)
    "empty_png": ("empty.png", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "empty_jpg": ("empty.jpg", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "empty_mp4": ("empty.mp4", lambda p: p.write_bytes(b""), "cannot read video"),
    "text_jpg": ("notes.jpg", _text, "not an image file"),
    "text_png": ("notes.png", _text, "not an image file"),
    "text_mp4": ("notes.mp4", _text, "cannot read video"),
    "random_png": ("noise.png", lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not an image file"),
    "random_avi": ("noise.avi", lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "cannot read video"),
    "truncated_png": ("cut.png", _cut(BASKETBALL), "truncated"),
    "truncated_jpg": ("cut.jpg", _cut(ASTRONAUT, 0.5), "truncated"),
    "header_only_png": ("header.png", lambda p: p.write_bytes(png_header(64, 48)), "truncated"),
    "bad_crc_png": ("crc.png", _crc, "damaged"),
    "zero_width_png": ("zero.png", lambda p: p.write_bytes(png_header(0, 48)), "not an image file"),
    "bomb_png": ("bomb.png", lambda p: p.write_bytes(png_header(50000, 50000)), "too large: 50000x50000 pixels"),
    "bomb_jpg": ("bomb.jpg", lambda p: p.write_bytes(jpeg_header(50000, 50000)), "too large: 50000x50000 pixels"),
    "bomb_12k_png": ("big.png", lambda p: p.write_bytes(png_header(12000, 12000)), "(144 MP) is above the limit"),
    "truncated_mp4_index_last": ("cut.mp4", _cut(CLIP, 0.5), "cannot read video"),
    "cut_mp4_named_png": ("video.png", _cut(CLIP, 0.5), "cannot read video"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_file_is_one_line_and_the_others_go_on(cli, tmp_path, case):
    name, make, text = BAD[case]
    bad = tmp_path / "in" / name
    bad.parent.mkdir()
    make(bad)
    good = wall(tmp_path / "in" / "good.png")
    out = tmp_path / "out"
    rc, stdout, err = cli(bad, good, "--out", out, "--boxes", BOX)
    assert rc == 1
    assert_lines(err, ("warning", bad, text))
    assert err.strip().endswith("; skipped")
    assert summary(stdout).startswith("hmr demo: 1 done, 0 already done, 1 failed")
    assert sorted(f.name for f in out.iterdir()) == ["good.json", "good.npz", "good_overlay.png"]
    assert_clean(out)


def test_bad_files_before_a_real_picture(cli, tmp_path):
    """A bomb, a text file and a truncated picture ahead of a real one: the real one is still fully done."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in/1_bomb.png").write_bytes(png_header(30000, 30000))
    _text(tmp_path / "in/2_text.jpg")
    _cut(BASKETBALL)(tmp_path / "in/3_cut.png")
    shutil.copy(BASKETBALL, tmp_path / "in/4_good.png")
    rc, stdout, err = cli(tmp_path / "in", "--out", tmp_path / "o")
    assert rc == 1
    assert_lines(err, ("warning", tmp_path / "in/1_bomb.png", "too large"),
                 ("warning", tmp_path / "in/2_text.jpg", "not an image"),
                 ("warning", tmp_path / "in/3_cut.png", "truncated"))  # fmt: skip
    assert "1 done, 0 already done, 3 failed" in summary(stdout)
    rec = json.loads((tmp_path / "o/4_good.json").read_text())
    assert len(rec["people"]) == 2 and all(p["status"] == "mesh" for p in rec["people"])
    assert_clean(tmp_path / "o")


def test_pixel_limit_is_configurable(cli, tmp_path):
    """--max-pixels refuses a real picture above it (from its header) and 0 lifts the limit."""
    small = wall(tmp_path / "w.png")
    rc, _, err = cli(small, "--out", tmp_path / "o", "--boxes", BOX, "--max-pixels", 1000)
    assert rc == 2
    assert_lines(err, ("warning", small, "64x48 pixels (0 MP) is above the limit of 0.001 MP"),
                 ("error", None, "no input could be processed"))  # fmt: skip
    rc, _, err = cli(small, "--out", tmp_path / "o", "--boxes", BOX, "--max-pixels", 0)
    assert rc == 0 and err == ""
    assert_clean(tmp_path / "o")


def test_video_frames_above_the_pixel_limit(cli, tmp_path):
    video = tiny_video(tmp_path / "v.mp4", frames=3)
    rc, _, err = cli(video, "--out", tmp_path / "o", "--max-pixels", 1000)
    assert rc == 2
    assert_lines(err, ("warning", video, "too large: 64x48"), ("error", None, "no input could be processed"))
    assert_clean(tmp_path / "o")


def test_missing_input_beside_a_good_one(cli, tmp_path):
    good = wall(tmp_path / "good.png")
    rc, stdout, err = cli(tmp_path / "nope.png", good, "--out", tmp_path / "o", "--boxes", BOX)
    assert rc == 1
    assert_lines(err, ("warning", None, f"input not found: {tmp_path / 'nope.png'}; skipped"))
    assert "1 done, 0 already done, 1 failed" in summary(stdout)


def test_all_inputs_bad_is_exit_2(cli, tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    _text(tmp_path / "b.jpg")
    rc, stdout, err = cli(tmp_path / "a.png", tmp_path / "b.jpg", "--out", tmp_path / "o")
    assert rc == 2
    assert_lines(err, ("warning", tmp_path / "a.png", "empty"), ("warning", tmp_path / "b.jpg", "not an image"),
                 ("error", None, "no input could be processed"))  # fmt: skip
    assert "0 done, 0 already done, 2 failed" in summary(stdout)
    assert not any((tmp_path / "o").iterdir())


# --------------------------------------------------------------------- unusual but valid pictures
def _src(size=(80, 60)) -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB").resize(size))


def _gray() -> np.ndarray:
    return np.asarray(Image.fromarray(_src()).convert("L"))


def _pil(make_image, **kw):
    return lambda p: make_image().save(p, **kw)


def _cv2(arr):
    def write(p):
        import cv2

        assert cv2.imwrite(str(p), arr)

    return write


def _exif(orientation: int):
    def write(p):
        im = Image.fromarray(_src())
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(p, exif=exif, quality=95)

    return write


def _gray3(path) -> np.ndarray:
    return np.dstack([_gray()] * 3)


def _rgb(path) -> np.ndarray:
    return _src()


def _rgba_half() -> np.ndarray:
    return np.dstack([_src(), np.full((60, 80), 128, np.uint8)])


def _palette_transparent() -> Image.Image:
    im = Image.fromarray(_src()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.info["transparency"] = 0
    return im


def _rgba_over_white(path):
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    return _white_over(rgba[..., :3], rgba[..., 3])


def _white_over(rgb, alpha):
    a = alpha[..., None].astype(np.float32) / 255
    return rgb * a + 255 * (1 - a)


# name: (file name, maker, expected (H, W, 3) array or None, mean tolerance)
GOOD = {
    "gray_L": ("gray.png", _pil(lambda: Image.fromarray(_gray())), _gray3, 0),
    "gray_LA": ("gray_alpha.png", _pil(lambda: Image.fromarray(_gray()).convert("LA")), _gray3, 0),
    "gray16_I;16": ("gray16.png", _pil(lambda: Image.fromarray(_gray().astype(np.uint16) * 257)), _gray3, 0),
    "gray16_I;16B_tiff": (
        "gray16b.tif",
        _pil(lambda: Image.frombytes("I;16B", (80, 60), (_gray().astype(">u2") * 257).tobytes())),
        _gray3,
        0,
    ),
    "gray32_I_tiff": ("gray32.tif", _pil(lambda: Image.fromarray(_gray().astype(np.int32) * 257)), _gray3, 0),
    "float_F_tiff": ("float.tif", _pil(lambda: Image.fromarray(_gray().astype(np.float32) / 255)), _gray3, 0),
    "rgb16_png": ("rgb16.png", _cv2(_src()[..., ::-1].astype(np.uint16) * 257), _rgb, 0),
    "rgba16_png": (
        "rgba16.png",
        _cv2(np.dstack([_src()[..., ::-1], np.full((60, 80), 255, np.uint8)]).astype(np.uint16) * 257),
        _rgb,
        0,
    ),
    "rgba_half_alpha": (
        "rgba.png",
        _pil(lambda: Image.fromarray(_rgba_half())),
        lambda p: _white_over(_src(), _rgba_half()[..., 3]),
        0.6,
    ),
    "palette": ("palette.png", _pil(lambda: Image.fromarray(_src()).convert("P")), None, 0),
    "palette_transparency": ("palette_t.png", _pil(_palette_transparent), _rgba_over_white, 0.6),
    "cmyk_jpg": ("cmyk.jpg", _pil(lambda: Image.fromarray(_src()).convert("CMYK"), quality=95), _rgb, 6),
    "cmyk_tiff": ("cmyk.tif", _pil(lambda: Image.fromarray(_src()).convert("CMYK")), _rgb, 1),
    "bilevel_1": ("bilevel.png", _pil(lambda: Image.fromarray(_gray()).convert("1")), None, 0),
    "exif_rotate_90": ("rot6.jpg", _exif(6), lambda p: np.rot90(_src(), -1), 6),
    "exif_rotate_180": ("rot3.jpg", _exif(3), lambda p: np.rot90(_src(), 2), 6),
    "exif_rotate_270": ("rot8.jpg", _exif(8), lambda p: np.rot90(_src(), 1), 6),
    "webp": ("pic.webp", _pil(lambda: Image.fromarray(_src()), lossless=True), _rgb, 0),
    "bmp": ("pic.bmp", _pil(lambda: Image.fromarray(_src())), _rgb, 0),
    "one_pixel": ("one.png", _pil(lambda: Image.new("RGB", (1, 1), (10, 20, 30))), None, 0),
    "one_pixel_gray16": ("one16.png", _pil(lambda: Image.fromarray(np.full((1, 1), 65535, np.uint16))), None, 0),
    "thin_2x3000": ("thin.png", _pil(lambda: Image.new("RGB", (2, 3000), (90, 90, 90))), None, 0),
    "png_named_jpg": ("really_png.jpg", _pil(lambda: Image.fromarray(_src()), format="PNG"), _rgb, 0),
    "jpg_named_png": ("really_jpg.png", _pil(lambda: Image.fromarray(_src()), format="JPEG", quality=95), _rgb, 6),
    "png_named_mp4": ("really_png.mp4", _pil(lambda: Image.fromarray(_src()), format="PNG"), _rgb, 0),
}


@pytest.mark.parametrize("case", GOOD)
def test_unusual_picture_is_read_and_processed(cli, tmp_path, case):
    name, make, expected, tol = GOOD[case]
    path = tmp_path / name
    make(path)
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGB"))  # Pillow's own view, for size (and palette/bilevel content)
    img = read_image(path)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    want = ref if expected is None else np.asarray(expected(path), np.float32)
    assert img.shape == want.shape
    assert np.abs(img.astype(np.float32) - want).mean() <= tol + 0.01
    rc, _, err = cli(path, "--out", tmp_path / "o", "--boxes", "0,0,1,1")
    assert (rc, err) == (0, "")
    stem = path.stem
    rec = json.loads((tmp_path / "o" / f"{stem}.json").read_text())
    assert rec["image_size"] == [img.shape[1], img.shape[0]] and rec["kind"] == "image"
    assert_clean(tmp_path / "o")


def test_sixteen_bit_picture_finds_the_people(cli, tmp_path):
    """basketball1.png as 16-bit grayscale (Pillow's I;16) is not washed out to white: both players found."""
    gray16 = np.asarray(Image.open(BASKETBALL).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "b16.png")
    assert Image.open(tmp_path / "b16.png").mode == "I;16"
    rc, _, err = cli(tmp_path / "b16.png", "--out", tmp_path / "o")
    assert (rc, err) == (0, "")
    assert len(json.loads((tmp_path / "o/b16.json").read_text())["people"]) == 2


def test_corrupt_exif_keeps_the_picture(tmp_path):
    _exif(6)(tmp_path / "r.jpg")
    data = bytearray((tmp_path / "r.jpg").read_bytes())
    i = data.find(b"Exif\x00\x00")
    data[i + 6 : i + 30] = b"\xff" * 24  # garbage TIFF header inside the EXIF block
    (tmp_path / "r.jpg").write_bytes(bytes(data))
    img = read_image(tmp_path / "r.jpg")
    assert img.shape == (60, 80, 3)


@pytest.mark.parametrize(
    "folder, name",
    [
        ("with spaces", "a b c.png"),
        ("Ünïcødé", "фото 写真 ☃.png"),
        ("brackets[1]", "[x]*?.png"),
        ("quotes", 'it\'s "q".png'),
    ],
)
def test_awkward_paths(cli, tmp_path, folder, name):
    """Spaces, non-ASCII, glob characters and quotes in input and output paths."""
    src = wall(tmp_path / folder / name)
    out = tmp_path / f"out {folder}"
    rc, _, err = cli(tmp_path / folder, "--out", out, "--boxes", BOX)
    assert (rc, err) == (0, "")
    stem = Path(name).stem
    assert (out / f"{stem}.json").is_file() and json.loads((out / f"{stem}.json").read_text())["input"] == str(src)
    rc, _, err = cli(tmp_path / folder, "--out", out, "--boxes", BOX, "--overwrite")  # stale clean-up globbing
    assert (rc, err) == (0, "") and (out / f"{stem}.json").is_file()
    assert_clean(out)


def test_misnamed_video_is_read_as_a_video(cli, tmp_path):
    """An mp4 named .jpg is processed by content, as a video."""
    tiny_video(tmp_path / "clip.mp4", frames=3).rename(tmp_path / "clip.jpg")
    rc, _, err = cli(tmp_path / "clip.jpg", "--out", tmp_path / "o")
    assert (rc, err) == (0, "")
    rec = json.loads((tmp_path / "o/clip.json").read_text())
    assert rec["kind"] == "video" and rec["num_frames"] == 3 and rec["ended_early"] is False
    assert_clean(tmp_path / "o")


def test_truncated_video_is_recorded_as_ended_early(cli, tmp_path):
    full = tiny_video(tmp_path / "full.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rc, _, err = cli(cut, full, "--out", tmp_path / "o")
    assert rc == 0
    assert_lines(err, ("warning", cut, "the video ended early"))
    rec = json.loads((tmp_path / "o/cut.json").read_text())
    assert rec["ended_early"] is True and rec["frames_declared"] == 30 and 0 < rec["num_frames"] < 30
    assert f"{rec['num_frames']} of its 30 declared frames" in err
    rec = json.loads((tmp_path / "o/full.json").read_text())
    assert rec["ended_early"] is False and rec["frames_declared"] == rec["num_frames"] == 30
    assert_clean(tmp_path / "o")


# ------------------------------------------------------------------------------ output folder problems
def test_out_is_an_existing_file(cli, tmp_path):
    (tmp_path / "o.txt").write_text("keep me")
    rc, _, err = cli(wall(tmp_path / "w.png"), "--out", tmp_path / "o.txt")
    assert rc == 2
    assert_lines(err, ("error", None, f"--out {tmp_path / 'o.txt'}: exists and is not a folder"))
    assert (tmp_path / "o.txt").read_text() == "keep me"


def test_out_below_a_file(cli, tmp_path):
    (tmp_path / "f").write_text("x")
    rc, _, err = cli(wall(tmp_path / "w.png"), "--out", tmp_path / "f/sub")
    assert rc == 2
    assert_lines(err, ("error", None, f"--out {tmp_path / 'f/sub'}: cannot write there (Not a directory)"))


def test_read_only_out_is_found_before_any_work(cli, tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root ignores modes: simulate the refusal
        real = outputs_mod.tempfile.mkstemp

        def mkstemp(*a, dir=None, **kw):
            if Path(dir) == out:
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real(*a, dir=dir, **kw)

        monkeypatch.setattr(outputs_mod.tempfile, "mkstemp", mkstemp)
    calls = []
    monkeypatch.setattr(demo_mod, "Pipeline", lambda *a, **kw: calls.append(1))  # never reached
    try:
        rc, _, err = cli(wall(tmp_path / "w.png"), "--out", out, "--boxes", BOX)
    finally:
        out.chmod(0o755)
    assert rc == 2 and not calls
    assert_lines(err, ("error", None, f"--out {out}: cannot write there (Permission denied)"))
    assert not any(out.iterdir())


def test_full_disk_at_the_write_test(cli, tmp_path, monkeypatch):
    def mkstemp(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs_mod.tempfile, "mkstemp", mkstemp)
    rc, _, err = cli(wall(tmp_path / "w.png"), "--out", tmp_path / "o")
    assert rc == 2
    assert_lines(err, ("error", None, "cannot write there (No space left on device)"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_disk_fills_while_writing_one_input(cli, tmp_path, monkeypatch, code):
    """The first input's npz hits a full disk half-way: one line naming the input and the folder, nothing
    half-written, and the next input is still done."""
    real = exports.write_bytes

    def write_bytes(path, data):
        if Path(path).name == "a.npz":
            with exports.atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                raise OSError(code, os.strerror(code))
        real(path, data)

    monkeypatch.setattr(exports, "write_bytes", write_bytes)
    a, b = wall(tmp_path / "in/a.png"), wall(tmp_path / "in/b.png")
    rc, stdout, err = cli(a, b, "--out", tmp_path / "o", "--boxes", BOX)
    assert rc == 1
    assert_lines(err, ("warning", a, f"cannot write the outputs in {tmp_path / 'o'}: {os.strerror(code)}; skipped"))
    assert "1 done, 0 already done, 1 failed" in summary(stdout)
    assert sorted(f.name for f in (tmp_path / "o").iterdir()) == ["b.json", "b.npz", "b_overlay.png"]
    assert_clean(tmp_path / "o")


# ------------------------------------------------------------------------------------------ resuming
def test_same_name_other_content_is_redone(cli, tmp_path):
    """a/basketball1.png then b/basketball1.png (another picture) into one folder: redone, not 'already done'."""
    wall(tmp_path / "a/pic.png")
    (tmp_path / "b").mkdir()
    Image.fromarray(_src()).save(tmp_path / "b/pic.png")
    out = tmp_path / "o"
    assert cli(tmp_path / "a/pic.png", "--out", out, "--boxes", BOX)[0] == 0
    first = json.loads((out / "pic.json").read_text())
    rc, stdout, err = cli(tmp_path / "b/pic.png", "--out", out, "--boxes", BOX)
    assert rc == 0 and "1 done, 0 already done" in summary(stdout)
    assert_lines(err, ("warning", tmp_path / "b/pic.png", "was made from other content"))
    rec = json.loads((out / "pic.json").read_text())
    assert rec["input"] == str(tmp_path / "b/pic.png") and rec["image_size"] == [80, 60]
    assert rec["input_sha256"] != first["input_sha256"] and len(rec["input_sha256"]) == 64
    rc, stdout, err = cli(tmp_path / "b/pic.png", "--out", out, "--boxes", BOX)  # unchanged: already done
    assert (rc, err) == (0, "") and "0 done, 1 already done, 0 failed" in summary(stdout)
    assert_clean(out)


@pytest.mark.parametrize("record", ['{"people": [', "", '{"schema_version": 1, "files": {}}', "[1, 2]"])
def test_unreadable_or_old_record_is_redone(cli, tmp_path, record):
    out = tmp_path / "o"
    out.mkdir()
    (out / "w.json").write_text(record)
    rc, _, err = cli(wall(tmp_path / "w.png"), "--out", out, "--boxes", BOX)
    assert rc == 0
    assert_lines(err, ("warning", tmp_path / "w.png", "; redoing it"))
    assert json.loads((out / "w.json").read_text())["input_sha256"]
    assert_clean(out)


def test_fewer_people_removes_the_stale_person_files_only(cli, tmp_path):
    """A redo with fewer people removes the earlier run's extra person meshes, never unrelated files."""
    img = wall(tmp_path / "w.png", size=(120, 60))
    out = tmp_path / "o"
    assert cli(img, "--out", out, "--boxes", "0,0,50,50;60,0,110,50", "--mesh-format", "obj", "ply")[0] == 0
    assert len(json.loads((out / "w.json").read_text())["people"]) == 2
    # pretend the earlier run meshed both people (box-only people have no mesh files)
    for f in ("w_person0.obj", "w_person1.obj", "w_person1.ply", "w_person7.glb", "w_person1_skinned.glb",
              "w_person2.bvh", "w_track3.glb", "w_track12.bvh"):  # fmt: skip
        (out / f).write_text("old")
    unrelated = ["w_person1.obj.bak", "w_person1_notes.txt", "notes.txt", "ww_person1.obj", "w_personX.obj",
                 "w_track.glb", "w_track3.obj", "w_person1_skinned.obj"]  # fmt: skip
    for f in unrelated:
        (out / f).write_text("mine")
    rc, _, err = cli(img, "--out", out, "--boxes", "0,0,50,50", "--overwrite")
    assert (rc, err) == (0, "")
    left = sorted(f.name for f in out.iterdir())
    assert left == sorted(["w.json", "w.npz", "w_overlay.png", *unrelated])


def test_files_listed_by_the_old_record_are_replaced(cli, tmp_path):
    out = tmp_path / "o"
    img = wall(tmp_path / "w.png")
    assert cli(img, "--out", out, "--boxes", BOX)[0] == 0
    rec = json.loads((out / "w.json").read_text())
    rec["files"]["side"] = "w_side.png"
    rec["files"]["evil"] = "../escape.txt"  # never followed outside the folder
    (out / "w_side.png").write_text("old side view")
    (tmp_path / "escape.txt").write_text("keep")
    (out / "w.json").write_text(json.dumps(rec))
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(img)  # the input changes: redone
    rc, _, err = cli(img, "--out", out, "--boxes", BOX)
    assert rc == 0
    assert_lines(err, ("warning", img, "was made from other content"))
    assert not (out / "w_side.png").exists() and (tmp_path / "escape.txt").read_text() == "keep"
    assert_clean(out)


# ----------------------------------------------------------------------------- stale staging folders
def _staging_name(pid: int, host: str | None = None) -> str:
    return f".w.partial-{host or socket.gethostname()}-{pid}-abc123_x"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize(
    "owner, removed",
    [("dead", True), ("self", False), ("other_host", False), ("old_format", False)],
)
def test_stale_staging_folders(cli, tmp_path, owner, removed):
    out = tmp_path / "o"
    name = {
        "dead": _staging_name(_dead_pid()),
        "self": _staging_name(os.getpid()),  # a running hmr demo: left alone
        "other_host": _staging_name(_dead_pid(), host="elsewhere.example"),
        "old_format": ".w.partial-k2j3h4",
    }[owner]
    (out / "sub" / name).mkdir(parents=True)
    (out / "sub" / name / "w.npz").write_bytes(b"half")
    rc, _, err = cli(wall(tmp_path / "w.png"), "--out", out, "--boxes", BOX)
    assert rc == 0
    assert (out / "sub" / name).exists() is not removed
    if removed:
        assert_lines(err, ("warning", None, "removed 1 unfinished output folder(s) of interrupted runs"))
        assert_clean(out)
    else:
        assert err == ""


# -------------------------------------------------------------------- usage errors and crashes
@pytest.mark.parametrize(
    "args, text",
    [
        ([], "give images, videos or folders"),
        (["{tmp}/empty_dir"], "no images or videos found in"),
        (["{tmp}/w.png", "--boxes", "1,2,3"], "--boxes"),
        (["{tmp}/w.png", "--boxes", "{tmp}/missing.json"], "cannot read it as JSON"),
        (["{tmp}/w.png", "--boxes", "{tmp}/w.png"], "cannot read it as JSON"),
        (["{tmp}/w.png", "--boxes", "5,5,1,1"], "x2 > x1"),
        (["{tmp}/nope.png", "{tmp}/nope2.jpg"], "input not found"),
    ],
)
def test_usage_errors_are_one_line_exit_2(cli, tmp_path, args, text):
    (tmp_path / "empty_dir").mkdir()
    wall(tmp_path / "w.png")
    rc, _, err = cli(*[a.format(tmp=tmp_path) for a in args], "--out", tmp_path / "o")
    assert rc == 2
    assert_lines(err, ("error", None, text))


@pytest.mark.parametrize(
    "args", [["--detect-every", "0"], ["--max-frames", "-1"], ["--max-pixels", "-5"], ["--max-pixels", "lots"]]
)
def test_bad_option_values_are_argparse_errors(cli, tmp_path, args):
    with pytest.raises(SystemExit) as e:
        cli(wall(tmp_path / "w.png"), *args)
    assert e.value.code == 2


def test_missing_smpl_file_is_one_line(tmp_path, capfd):
    rc = main(["demo", str(wall(tmp_path / "w.png")), "--out", str(tmp_path / "o"), "--smpl", "/nonexistent.pkl"])
    err = capfd.readouterr().err
    assert rc == 2
    assert_lines(err, ("error", None, "/nonexistent.pkl"))


def test_camera_that_cannot_open(cli, tmp_path):
    rc, _, err = cli("--camera", 97, "--no-window", "--out", tmp_path / "o")
    assert rc == 2
    assert_lines(err, ("error", None, "cannot open camera 97"))


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_error_in_one_input(cli, tmp_path, monkeypatch, pipeline, debug):
    """An exception that does not name the file (here from the pipeline): the line names it, the other input
    is still done; the traceback only with --debug."""
    real = type(pipeline).__call__

    def flaky(self, image, *a, **k):
        if image.shape[1] == 99:
            raise ZeroDivisionError("division by zero")
        return real(self, image, *a, **k)

    monkeypatch.setattr(type(pipeline), "__call__", flaky)
    bad, good = wall(tmp_path / "a.png", size=(99, 48)), wall(tmp_path / "b.png")
    rc, stdout, err = cli(bad, good, "--out", tmp_path / "o", "--boxes", BOX, debug=debug)
    assert rc == 1 and "1 done, 0 already done, 1 failed" in summary(stdout)
    if debug:
        assert "Traceback" in err and "ZeroDivisionError" in err
        assert err.strip().splitlines()[-1] == f"hmr: warning: {bad}: division by zero; skipped"
    else:
        assert_lines(err, ("warning", bad, "division by zero; skipped"))
    assert_clean(tmp_path / "o")


@pytest.mark.parametrize("exc", [RuntimeError("weights\nare\nbad"), KeyError("missing_key"), MemoryError()])
def test_uncaught_error_is_one_line_exit_2(tmp_path, monkeypatch, capfd, exc):
    def broken(*a, **kw):
        raise exc

    monkeypatch.setattr(demo_mod, "Pipeline", broken)
    rc = main(["demo", str(wall(tmp_path / "w.png")), "--out", str(tmp_path / "o")])
    err = capfd.readouterr().err
    assert rc == 2
    text = {RuntimeError: "weights are bad", KeyError: "missing_key", MemoryError: "MemoryError"}[type(exc)]
    assert_lines(err, ("error", None, text))


def test_ctrl_c_in_process_is_130_and_leaves_nothing(cli, tmp_path, monkeypatch, pipeline):
    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(pipeline), "__call__", interrupt)
    rc, stdout, err = cli(wall(tmp_path / "w.png"), "--out", tmp_path / "o", "--boxes", BOX)
    assert rc == 130 and err.strip() == "hmr: interrupted"
    assert "0 done" in summary(stdout)
    assert not any((tmp_path / "o").iterdir())


# -------------------------------------------------------------------------------- Python API
def test_api_errors_name_the_file(tmp_path, pipeline):
    import hmr

    (tmp_path / "bomb.png").write_bytes(png_header(50000, 50000))
    with pytest.raises(ValueError, match=r"bomb\.png: too large"):
        hmr.predict(tmp_path / "bomb.png", pipeline=pipeline)
    (tmp_path / "t.jpg").write_text("x")
    with pytest.raises(ValueError, match=r"t\.jpg: not an image"):
        hmr.predict(tmp_path / "t.jpg", pipeline=pipeline)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        hmr.predict(tmp_path / "nope.png", pipeline=pipeline)


@pytest.mark.parametrize(
    "array, value",
    [
        (np.full((8, 8), 65535, np.uint16), 255),
        (np.full((8, 8, 3), 32896, np.uint16), 128),
        (np.full((8, 8, 4), [0, 0, 0, 0], np.uint8), 255),  # fully transparent -> white
        (np.full((8, 8, 2), [0, 255], np.uint8), 0),  # gray + opaque alpha
        (np.full((8, 8), np.nan, np.float32), 0),
        (np.full((8, 8), 0.5, np.float64), 128),
        (np.ones((8, 8), bool), 255),
    ],
)
def test_api_arrays_of_any_type(array, value):
    from hmr.io.images import as_rgb

    rgb = as_rgb(array)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8 and (rgb == value).all()


# -------------------------------------------------------------------------- signals (subprocesses)
def _foreground_signals():
    # A foreground command gets Ctrl-C; when the suite itself runs as a background job (``cmd &`` in a script),
    # SIGINT arrives ignored and the child would inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args, out: Path):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "hmr.cli", "demo", *map(str, args), "--out", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_foreground_signals)  # fmt: skip


def _wait_for(cond, proc, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.1)


def _video_staging(out: Path) -> list[Path]:
    return [d for d in out.glob(".clip.partial-*") if any(d.glob(".clip.mp4.*"))]  # first frame being written


def _consistent_video(out: Path, frames: int) -> None:
    import imageio.v2 as imageio

    rec = json.loads((out / "clip.json").read_text())
    assert rec["num_frames"] == frames
    with np.load(out / "clip.npz") as z:
        assert int(z["frame"].max()) == frames - 1
    assert imageio.get_reader(out / "clip.mp4").count_frames() == frames


def test_kill_9_during_a_video_then_rerun(cli, tmp_path):
    """kill -9 mid-video: the outputs on disk are the complete earlier ones (never truncated, never mixed), a
    stale staging folder is left; the rerun removes it and writes a complete, consistent result."""
    out = tmp_path / "o"
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    wall(tmp_path / "w.png")
    assert cli(tmp_path / "clip.mp4", "--out", out, "--max-frames", 1)[0] == 0
    proc = _start([tmp_path / "w.png", tmp_path / "clip.mp4", "--boxes", BOX, "--overwrite", "--max-frames", 6], out)
    try:
        _wait_for(lambda: _video_staging(out), proc)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((out / "w.json").read_text())["people"][0]["status"] == "box_only"  # done before the kill
    _consistent_video(out, 1)  # the earlier run's outputs, whole
    assert len(list(out.glob(".clip.partial-*"))) == 1
    rc, _, err = cli(tmp_path / "clip.mp4", "--out", out, "--max-frames", 2, "--overwrite")
    assert rc == 0
    assert_lines(err, ("warning", None, "removed 1 unfinished output folder(s)"))
    _consistent_video(out, 2)
    assert_clean(out)


@pytest.mark.parametrize(
    "sig, code, line", [(signal.SIGTERM, 143, "hmr: terminated"), (signal.SIGINT, 130, "hmr: interrupted")]
)
def test_sigterm_and_ctrl_c_clean_up(tmp_path, sig, code, line):
    out = tmp_path / "o"
    shutil.copy(CLIP, tmp_path / "clip.mp4")
    proc = _start([tmp_path / "clip.mp4"], out)
    try:
        _wait_for(lambda: _video_staging(out), proc)
        proc.send_signal(sig)
        stdout, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines() == [line]
    assert "0 done, 0 already done, 0 failed" in summary(stdout)
    assert not any(out.iterdir())
