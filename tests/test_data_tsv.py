"""The SMPLer / METRO TSV reader on small datasets written in the reference layout (YAML, tab-separated TSVs
with base64 JPEGs in the last column, JSON labels, .lineidx byte offsets, hw rows, linelists)."""

from __future__ import annotations

import base64
import json
import os
import pickle

import cv2
import numpy as np
import pytest
import torch
import yaml

import hmr.data.tsv as tsv_mod
from hmr.data.errors import BadSample, DatasetLayoutError
from hmr.data.sample import J24_TO_44
from hmr.data.tsv import TsvDataset, scan_lineidx, write_lineidx

H, W = 48, 64


def picture(seed: int) -> np.ndarray:
    """RGB uint8 (H, W, 3): smooth, so JPEG keeps it close, with red and blue far apart (a BGR/RGB swap shows)."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([200 + 0 * x, (x * 3 + seed * 20) % 256, 30 + 0 * y], axis=-1).astype(np.uint8)
    img[4 + seed : 20 + seed, 8:24] = (20, 40, 230)  # a block whose place tells the rows apart
    return img


def jpeg_b64(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def label(seed: int, nested: bool = False, **overrides) -> dict:
    rng = np.random.default_rng(seed)
    j2d = np.concatenate([rng.uniform(0, W, (24, 2)), (rng.uniform(size=(24, 1)) > 0.2)], axis=1)
    j3d = np.concatenate([rng.normal(0, 0.5, (24, 3)), np.ones((24, 1))], axis=1)
    out = {
        "center": [W / 2 + seed, H / 2 - seed],
        "scale": 0.2 + 0.01 * seed,
        "has_2d_joints": 1,
        "has_3d_joints": 1,
        "2d_joints": (j2d[None] if nested else j2d).tolist(),
        "3d_joints": (j3d[None] if nested else j3d).tolist(),
        "has_smpl": 1,
        "pose": rng.normal(0, 0.3, 72).tolist(),
        "betas": rng.normal(0, 1, 10).tolist(),
        "gender": "m" if seed % 2 else "f",
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def write_tsv(path, rows: list[list[str]], lineidx: bool = True) -> None:
    """As SMPLer's tsv_writer: tab-joined columns a line, and the byte offset of each line in .lineidx."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets, data = [], b""
    for cols in rows:
        offsets.append(len(data))
        data += ("\t".join(cols) + "\n").encode("utf-8")
    path.write_bytes(data)
    if lineidx:
        path.with_suffix(".lineidx").write_text("".join(f"{o}\n" for o in offsets))


def write_split(folder, prefix: str, labels: list[dict], lineidx: bool = True) -> list[str]:
    """``prefix.{img,hw,label}.tsv`` in ``folder`` for rows with keys ``img_<i>.jpg``; returns the keys."""
    keys = [f"{prefix}_{i:03d}.jpg" for i in range(len(labels))]
    write_tsv(folder / f"{prefix}.img.tsv", [[k, jpeg_b64(picture(i))] for i, k in enumerate(keys)], lineidx)
    write_tsv(folder / f"{prefix}.hw.tsv", [[k, json.dumps([{"height": H, "width": W}])] for k in keys], lineidx)
    label_rows = [[k, json.dumps([lab])] for k, lab in zip(keys, labels, strict=True)]
    write_tsv(folder / f"{prefix}.label.tsv", label_rows, lineidx)
    return keys


def plain_dataset(tmp_path, labels=None, linelist=(0, 2, 3), lineidx=True):
    """``human3.6m/valid.protocol2.yaml`` next to ``valid_protocol2/valid.*.tsv`` (METRO's tree)."""
    labels = labels if labels is not None else [label(i, nested=i == 1) for i in range(4)]
    root = tmp_path / "human3.6m"
    write_split(root / "valid_protocol2", "valid", labels, lineidx)
    write_tsv(root / "valid_protocol2" / "valid.linelist.tsv", [[str(r)] for r in linelist], lineidx)
    spec = {k: f"valid_protocol2/valid.{k}.tsv" for k in ("img", "hw", "label", "linelist")}
    (root / "valid.protocol2.yaml").write_text(yaml.safe_dump(spec))
    return root / "valid.protocol2.yaml", labels


PAIRS = [(1, 2), (0, 0), (1, 0), (0, 1)]


def composite_dataset(tmp_path):
    """``Tax-H36m-coco40k-Muco-UP-Mpii/train.yaml`` over two sources, rows from ``train.linelist.tsv``."""
    root = tmp_path / "Tax-H36m-coco40k-Muco-UP-Mpii"
    sources = {"h36m": [label(i) for i in range(2)], "coco": [label(10 + i) for i in range(3)]}
    for name, labels in sources.items():
        write_split(root / name, "train", labels)
    write_tsv(root / "train.linelist.tsv", [[str(s), str(r)] for s, r in PAIRS])
    spec = {
        "composite": True,
        "img": [f"{n}/train.img.tsv" for n in sources],
        "hw": [f"{n}/train.hw.tsv" for n in sources],
        "label": [f"{n}/train.label.tsv" for n in sources],
        "linelist": "train.linelist.tsv",
    }
    (root / "train.yaml").write_text(yaml.safe_dump(spec))
    return root / "train.yaml", list(sources.values())


def replace_label_row(yaml_path, row: int, text: str) -> None:
    """Rewrite one label row's JSON (the lineidx rewritten to match)."""
    path = yaml_path.parent / "valid_protocol2" / "valid.label.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    rows[row][1] = text
    write_tsv(path, rows)


def reason(ds, index) -> str:
    with pytest.raises(BadSample) as info:
        ds.read(index)
    assert "\n" not in str(info.value)
    return info.value.reason


# ---------------------------------------------------------------------------------------- reading
def test_plain_dataset_rows_images_and_annotations(tmp_path):
    path, labels = plain_dataset(tmp_path)
    ds = TsvDataset(path)
    assert len(ds) == 3 and ds.name == "human3.6m/valid.protocol2"
    for i, row in enumerate((0, 2, 3)):
        image, ann = ds.read(i)
        assert image.dtype == np.uint8 and image.shape == (H, W, 3)
        assert np.abs(image.astype(int) - picture(row).astype(int)).mean() < 3  # RGB, the linelist's row
        lab = labels[row]
        j2d, j3d = np.asarray(lab["2d_joints"]), np.asarray(lab["3d_joints"])
        assert ann.key == f"valid_{row:03d}.jpg" and ann.dataset == ds.name
        assert ann.keypoints_2d.shape == (44, 3) and ann.keypoints_2d.dtype == np.float32
        np.testing.assert_allclose(ann.keypoints_2d[list(J24_TO_44)], j2d, rtol=1e-6)
        np.testing.assert_allclose(ann.keypoints_3d[list(J24_TO_44)], j3d, rtol=1e-6, atol=1e-7)
        others = [k for k in range(44) if k not in J24_TO_44]
        assert len(others) == 20 and not ann.keypoints_2d[others].any() and not ann.keypoints_3d[others].any()
        np.testing.assert_allclose(ann.center, lab["center"])
        assert ann.size == pytest.approx(lab["scale"] * 200)
        np.testing.assert_allclose(ann.global_orient, lab["pose"][:3], rtol=1e-6)
        np.testing.assert_allclose(ann.body_pose, lab["pose"][3:], rtol=1e-6)
        assert ann.body_pose.shape == (69,)
        np.testing.assert_allclose(ann.betas, lab["betas"], rtol=1e-6)
        assert ann.has_global_orient == ann.has_body_pose == ann.has_betas == 1.0
        assert ann.focal_length is None and ann.principal_point is None and ann.mask is None
        assert ds.image_size(i) == (H, W)
    assert [ds.gender(i) for i in range(3)] == ["f", "f", "m"]
    assert TsvDataset(path, name="h36m-p2").annotation(0).dataset == "h36m-p2"


def test_specific_joint_slots(tmp_path):
    # J24 13 (top of head) is extra joint 13 (slot 38); J24 19 (nose) is OpenPose 0; J24 20 (left eye) is 16.
    j2d = np.zeros((24, 3))
    j2d[13], j2d[19], j2d[20] = (1, 2, 1), (3, 4, 1), (5, 6, 1)
    path, _ = plain_dataset(tmp_path, [label(0, **{"2d_joints": j2d.tolist()})], linelist=(0,))
    kp = TsvDataset(path).annotation(0).keypoints_2d
    np.testing.assert_array_equal(kp[38], (1, 2, 1))
    np.testing.assert_array_equal(kp[0], (3, 4, 1))
    np.testing.assert_array_equal(kp[16], (5, 6, 1))
    assert np.count_nonzero(kp[:, 2]) == 3


def test_nested_joints(tmp_path):
    path, labels = plain_dataset(tmp_path, [label(5, nested=True)], linelist=(0,))
    assert np.asarray(labels[0]["2d_joints"]).shape == (1, 24, 3)
    ann = TsvDataset(path).annotation(0)
    np.testing.assert_allclose(ann.keypoints_2d[list(J24_TO_44)], np.asarray(labels[0]["2d_joints"])[0], rtol=1e-6)
    np.testing.assert_allclose(ann.keypoints_3d[list(J24_TO_44)], np.asarray(labels[0]["3d_joints"])[0], atol=1e-7)


def test_has_flags_zero(tmp_path):
    labels = [
        label(0, has_2d_joints=0),
        label(1, has_3d_joints=0, has_smpl=0),
        label(2, has_smpl=0, pose=None, betas=None, gender=None, **{"3d_joints": None, "has_3d_joints": None}),
    ]
    path, _ = plain_dataset(tmp_path, labels, linelist=(0, 1, 2))
    ds = TsvDataset(path)
    a0, a1, a2 = (ds.annotation(i) for i in range(3))
    assert not a0.keypoints_2d[:, 2].any() and a0.keypoints_3d[list(J24_TO_44), 3].all()
    np.testing.assert_allclose(a0.keypoints_2d[list(J24_TO_44), :2], np.asarray(labels[0]["2d_joints"])[:, :2])
    assert a0.has_betas == 1.0
    assert not a1.keypoints_3d[:, 3].any() and a1.keypoints_2d[:, 2].any()
    assert a1.has_global_orient == a1.has_body_pose == a1.has_betas == 0.0
    # No SMPL and no 3D joints at all: zeros with the flags 0, not a skip.
    assert a2.has_betas == 0.0 and not a2.betas.any() and not a2.body_pose.any() and not a2.keypoints_3d.any()
    assert ds.gender(2) == "n"


def test_composite_rows_map_to_their_sources(tmp_path):
    path, sources = composite_dataset(tmp_path)
    ds = TsvDataset(path)
    assert len(ds) == len(PAIRS) and ds.name == "Tax-H36m-coco40k-Muco-UP-Mpii/train"
    for i, (s, r) in enumerate(PAIRS):
        image, ann = ds.read(i)
        assert ds.source_row(i) == (s, r)
        assert ann.key == f"train_{r:03d}.jpg"
        assert np.abs(image.astype(int) - picture(r).astype(int)).mean() < 3
        np.testing.assert_allclose(ann.center, sources[s][r]["center"])
        np.testing.assert_allclose(ann.betas, sources[s][r]["betas"], rtol=1e-6)


def test_missing_lineidx_is_built_in_memory(tmp_path):
    path, labels = plain_dataset(tmp_path, lineidx=False)
    assert not list(path.parent.rglob("*.lineidx"))
    ds = TsvDataset(path)
    assert len(ds) == 3 and ds.read(2)[1].key == "valid_003.jpg"
    np.testing.assert_allclose(ds.annotation(1).center, labels[2]["center"])
    assert not list(path.parent.rglob("*.lineidx"))  # nothing written beside the dataset
    img = path.parent / "valid_protocol2" / "valid.img.tsv"
    idx = write_lineidx(img)
    assert idx.name == "valid.img.lineidx"
    assert [int(s) for s in idx.read_text().split()] == scan_lineidx(img).tolist()
    assert TsvDataset(path).read(0)[1].key == "valid_000.jpg"


def test_scan_lineidx_edge_cases(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_bytes(b"a\t1\n\nb\t2")  # a blank line counts, a last line without newline counts
    assert scan_lineidx(p).tolist() == [0, 4, 5]
    p.write_bytes(b"")
    assert scan_lineidx(p).tolist() == []


def test_hw_as_two_numbers(tmp_path):
    path, _ = plain_dataset(tmp_path)
    write_tsv(path.parent / "valid_protocol2" / "valid.hw.tsv", [[f"valid_{i:03d}.jpg", "480 640"] for i in range(4)])
    assert TsvDataset(path).image_size(1) == (480, 640)


def test_read_in_forked_dataloader_workers(tmp_path):
    path, _ = plain_dataset(tmp_path)
    ds = TsvDataset(path)
    expected = [(ds.read(i)[1].key, int(ds.read(i)[0].sum())) for i in range(len(ds))]  # parent handle open

    class Wrapper(torch.utils.data.Dataset):
        def __len__(self):
            return 24

        def __getitem__(self, i):
            image, ann = ds.read(i % len(ds))
            assert ds._sources[0].img._pid == os.getpid()  # this worker's own handle, not the parent's
            return i, ann.key, int(image.sum())

    loader = torch.utils.data.DataLoader(
        Wrapper(), batch_size=None, num_workers=2, multiprocessing_context="fork", shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    got = sorted(loader)
    assert [g[0] for g in got] == list(range(24))
    assert all((key, total) == expected[i % len(ds)] for i, key, total in got)
    again = pickle.loads(pickle.dumps(ds))  # a spawned worker gets the paths, not the handles
    assert (again.read(1)[1].key, int(again.read(1)[0].sum())) == expected[1]


# ---------------------------------------------------------------------------------------- bad rows
def test_corrupt_images(tmp_path):
    path, _ = plain_dataset(tmp_path, linelist=(0, 1, 2, 3))
    img = path.parent / "valid_protocol2" / "valid.img.tsv"
    rows = [line.split("\t") for line in img.read_text().splitlines()]
    good = rows[0][1]
    rows[0][1] = good[: len(good) // 2 - 1]  # truncated: bad padding
    rows[1][1] = good[: (len(good) // 2) // 4 * 4]  # truncated on a 4-char boundary: a cut JPEG
    rows[2][1] = "not*base64!"
    rows[3][1] = base64.b64encode(b"\xff\xd8 this is no jpeg \xff\xd9").decode()
    write_tsv(img, rows)
    ds = TsvDataset(path)
    assert [reason(ds, i) for i in range(4)] == ["corrupt_image"] * 4
    with pytest.raises(BadSample, match="truncated"):  # caught by the end marker even where libjpeg pads it
        ds.read(1)
    ds.annotation(0)  # the label is fine


def test_non_finite_joints(tmp_path):
    j2d = np.asarray(label(0)["2d_joints"])
    j2d[5, 0] = np.nan
    lab3 = label(1)
    lab3["3d_joints"][2][1] = float("inf")
    path, _ = plain_dataset(tmp_path, [label(0, **{"2d_joints": j2d.tolist()}), lab3], linelist=(0, 1))
    assert "NaN" in (path.parent / "valid_protocol2" / "valid.label.tsv").read_text()  # json writes NaN literals
    ds = TsvDataset(path)
    assert reason(ds, 0) == "non_finite" and reason(ds, 1) == "non_finite"


def test_bad_labels(tmp_path):
    labels = [
        label(0, **{"2d_joints": None}),
        label(1, center=None),
        label(2, betas=None),
        label(3, **{"2d_joints": np.zeros((17, 3)).tolist()}),
        label(4, scale="big"),
        label(5, pose=list(range(60))),
        label(6, has_2d_joints=None, **{"2d_joints": None}),  # 2D joints are needed even without their flag
    ]
    path, _ = plain_dataset(tmp_path, labels, linelist=range(7))
    ds = TsvDataset(path)
    assert [reason(ds, i) for i in range(7)] == ["missing_key"] * 3 + ["bad_value"] * 3 + ["missing_key"]
    replace_label_row(path, 0, "[{not json")
    assert reason(TsvDataset(path), 0) == "bad_value"
    replace_label_row(path, 0, "[]")
    assert reason(TsvDataset(path), 0) == "missing_key"


def test_key_mismatch(tmp_path):
    path, _ = plain_dataset(tmp_path)
    lab = path.parent / "valid_protocol2" / "valid.label.tsv"
    rows = [line.split("\t") for line in lab.read_text().splitlines()]
    rows[2][0] = "someone_else.jpg"
    write_tsv(lab, rows)
    ds = TsvDataset(path)
    assert reason(ds, 1) == "bad_value"
    ds.read(0)


# ---------------------------------------------------------------------------------------- bad layouts
def layout_error(path_in_message, *args) -> str:
    with pytest.raises(DatasetLayoutError) as info:
        TsvDataset(*args)
    msg = str(info.value)
    assert str(path_in_message) in msg and "\n" not in msg, msg
    return msg


def test_missing_yaml_and_bad_yaml(tmp_path):
    layout_error(tmp_path / "nope.yaml", tmp_path / "nope.yaml")
    y = tmp_path / "d.yaml"
    y.write_text("- just\n- a list\n")
    assert "mapping" in layout_error(y, y)
    y.write_text("img: a.tsv\n")
    assert "'label'" in layout_error(y, y)
    y.write_text("img: [a.tsv\n")
    layout_error(y, y)
    y.write_text("img: [a.tsv]\nlabel: [b.tsv]\n")
    assert "composite" in layout_error(y, y)


def test_missing_tsv_names_file_and_yaml(tmp_path):
    path, _ = plain_dataset(tmp_path)
    label_tsv = path.parent / "valid_protocol2" / "valid.label.tsv"
    label_tsv.unlink()
    assert str(path) in layout_error(label_tsv, path)
    path, _ = plain_dataset(tmp_path / "b")
    linelist = path.parent / "valid_protocol2" / "valid.linelist.tsv"
    linelist.unlink()
    layout_error(linelist, path)


def test_bad_lineidx(tmp_path, monkeypatch):
    path, _ = plain_dataset(tmp_path)
    img_idx = path.parent / "valid_protocol2" / "valid.img.lineidx"  # each TSV has its own
    hw_idx = path.parent / "valid_protocol2" / "valid.hw.lineidx"
    assert img_idx.is_file() and hw_idx.is_file()
    good = hw_idx.read_text()
    offsets = [int(s) for s in good.split()]
    cases = {
        "short": "".join(f"{o}\n" for o in offsets[:-1]),
        "long": good + f"{offsets[-1] + 5}\n",
        "shifted": "".join(f"{o + (i > 1)}\n" for i, o in enumerate(offsets)),
        "text": good.replace(str(offsets[2]), "12a", 1),
        "beyond": "".join(f"{o * 1000}\n" for o in offsets),
        "repeated": "".join(f"{o}\n" for o in offsets[:2] + offsets[1:]),
    }
    for name, text in cases.items():
        hw_idx.write_text(text)
        layout_error(hw_idx, path)
        monkeypatch.setattr(tsv_mod, "_FULL_CHECK_BYTES", 0)  # the large-file checks catch them too
        assert "invalid line index" in layout_error(hw_idx, path), name
        monkeypatch.setattr(tsv_mod, "_FULL_CHECK_BYTES", 64 << 20)
    hw_idx.write_text(good)
    monkeypatch.setattr(tsv_mod, "_FULL_CHECK_BYTES", 0)
    assert len(TsvDataset(path)) == 3


def test_linelist_out_of_range_and_malformed(tmp_path):
    path, _ = plain_dataset(tmp_path, linelist=(0, 9))
    linelist = path.parent / "valid_protocol2" / "valid.linelist.tsv"
    layout_error(linelist, path)
    write_tsv(linelist, [["0"], ["one"]])
    layout_error(linelist, path)
    cpath, _ = composite_dataset(tmp_path / "c")
    write_tsv(cpath.parent / "train.linelist.tsv", [["2", "0"]])  # only sources 0 and 1
    layout_error(cpath.parent / "train.linelist.tsv", cpath)
    write_tsv(cpath.parent / "train.linelist.tsv", [["1"]])
    layout_error(cpath.parent / "train.linelist.tsv", cpath)
