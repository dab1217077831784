"""``hmr demo`` / ``hmr.predict`` on the committed real pictures and clip: outputs, schema, bad inputs, video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hmr.apps import demo as demo_mod
from hmr.apps import inputs as inputs_mod
from hmr.apps.demo import Demo
from hmr.body.keypoints import BLAZEPOSE33_NAMES
from hmr.fitting import FitConfig, StageConfig
from hmr.io.video import read_video
from hmr.pipeline import Pipeline, PipelineConfig
from hmr.pipeline.config import DetectorSection, NetworkSection, OutputsSection
from hmr.pipeline.records import reprojection_error
from tests.test_animation_export import gltf_scene

ROOT = Path(__file__).resolve().parent.parent
BASKETBALL = ROOT / "examples/basketball1.png"
CLIP = ROOT / "tests/data/vtest_clip.mp4"

# Fewer iterations than the default: these tests check plumbing and schema, not fit quality.
FAST_FIT = FitConfig(
    pose_stages=(StageConfig(30, 0.05, 10.0), StageConfig(40, 0.03, 1.0)),
    flip_search=False,
    final_stages=(),
    yaw_hypotheses=4,
    orientation_hypotheses=1,
    refine_stages=(StageConfig(10, 0.01, 1.0),),
)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(PipelineConfig(fitting=FAST_FIT))


@pytest.fixture(scope="module")
def image_run(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    outputs = OutputsSection(formats=("obj", "ply", "glb", "skinned", "bvh"))
    frame = Demo(pipeline, out, outputs).image(BASKETBALL, "basketball1")
    return out, frame


def test_both_people_get_meshes_that_match_their_keypoints(image_run):
    """Both players are found and fitted; projected mesh keypoints lie within 5% of the box diagonal of the
    detected ones (median over confident landmarks)."""
    _, frame = image_run
    assert len(frame.people) == 2
    for p in frame.people:
        assert p.status == "mesh"
        diag = float(np.linalg.norm(p.box[2:] - p.box[:2]))
        assert reprojection_error(p) < 0.05 * diag


def test_image_outputs_match_schema(image_run, pipeline):
    import trimesh

    out, frame = image_run
    rec = json.loads((out / "basketball1.json").read_text())
    assert rec["kind"] == "image" and rec["image_size"] == [640, 480]
    assert rec["body_model"] == pipeline.body_model.name and rec["method"] == "fit"
    assert rec["keypoint_names"] == list(BLAZEPOSE33_NAMES)
    assert len(rec["people"]) == 2
    for f in rec["files"].values():
        assert (out / f).is_file()
    npz = np.load(out / "basketball1.npz")
    nj = pipeline.body_model.num_joints
    for i, person in enumerate(rec["people"]):
        assert person["id"] == i and person["status"] == "mesh" and person["detection"] == "ssdlite"
        assert len(person["box"]) == 4 and 0 < person["score"] <= 1
        assert np.array(person["keypoints_2d"]).shape == (33, 3)
        assert np.array(person["keypoints_3d_world"]).shape == (33, 3)
        body = person["body"]
        assert np.array(body["global_orient_axis_angle"]).shape == (3,)
        assert np.array(body["body_pose_axis_angle"]).shape == (nj - 1, 3)
        assert np.array(body["body_pose_matrix"]).shape == (nj - 1, 3, 3)
        assert np.array(body["joints_3d"]).shape == (nj, 3)
        assert len(body["betas"]) == npz["betas"].shape[1]
        np.testing.assert_allclose(body["cam_t"], npz["cam_t"][i], atol=1e-4)
        for fmt in ("obj", "ply", "glb"):
            mesh = trimesh.load(out / person["files"][fmt], force="mesh", process=False)
            assert len(mesh.vertices) == pipeline.body_model.num_vertices
        obj = trimesh.load(out / person["files"]["obj"], process=False)
        np.testing.assert_allclose(obj.vertices * [1, -1, -1], npz["vertices"][i], atol=1e-4)
        # the rigged files pose the person's own joints where the toolkit put them (camera frame)
        assert person["files"]["skinned"] == f"basketball1_person{i}_skinned.glb"
        scene = gltf_scene((out / person["files"]["skinned"]).read_bytes())
        np.testing.assert_allclose(scene["joints"][0], body["joints_3d"], atol=1e-4)
        np.testing.assert_allclose(scene["vertices"][0], npz["vertices"][i], atol=1e-4)
        assert (out / person["files"]["bvh"]).read_text().startswith("HIERARCHY")
    assert npz["boxes"].shape == (2, 4) and npz["keypoints_2d"].shape == (2, 33, 3)
    assert npz["global_orient"].shape == (2, 1, 3, 3) and npz["body_pose_axis_angle"].shape == (2, nj - 1, 3)
    assert npz["vertices"].shape == (2, pipeline.body_model.num_vertices, 3)
    assert str(npz["body_model"]) == pipeline.body_model.name
    # the mesh's translation puts it in front of the camera, projecting onto the person
    assert (npz["cam_t"][:, 2] > 0).all()
    assert not list(out.glob(".*partial*"))


def test_folder_is_resumable(pipeline, tmp_path):
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    (src / "a.png").write_bytes(BASKETBALL.read_bytes())
    d = Demo(pipeline, tmp_path / "out", OutputsSection(pictures=False))
    stems = inputs_mod.output_stems([src / "a.png"], [tmp_path / "in"])
    assert stems == ["sub/a"]
    assert d.image(src / "a.png", stems[0], boxes=_one_box()) is not None
    mtime = (tmp_path / "out/sub/a.json").stat().st_mtime_ns
    assert d.image(src / "a.png", stems[0]) is None  # already done: skipped
    assert (tmp_path / "out/sub/a.json").stat().st_mtime_ns == mtime


def _one_box():
    from hmr.detection import Detections

    return Detections.from_boxes([[29, 81, 159, 477]])


def test_user_boxes_skip_detection(pipeline, tmp_path):
    frame = Demo(pipeline, tmp_path, OutputsSection(pictures=False)).image(BASKETBALL, "b", boxes=_one_box())
    assert len(frame.people) == 1 and frame.people[0].detection == "user"


def test_output_stems_disambiguate(tmp_path):
    paths = [tmp_path / "x.jpg", tmp_path / "x.png", tmp_path / "y.png"]
    assert inputs_mod.output_stems(paths, [tmp_path]) == ["x_jpg", "x_png", "y"]


@pytest.fixture()
def cli(pipeline, monkeypatch):
    """``hmr demo`` through the real CLI entry point, reusing the module's pipeline."""
    from hmr.cli import main

    monkeypatch.setattr(demo_mod, "Pipeline", lambda *a, **kw: pipeline)
    return lambda *args: main(["demo", *map(str, args)])


def test_cli_bad_inputs_exit_nonzero_and_leave_nothing(cli, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.jpg").write_text("hello")
    data = BASKETBALL.read_bytes()
    (bad / "cut.png").write_bytes(data[: len(data) // 3])
    (bad / "clip.mp4").write_bytes(b"\x00" * 1000)
    out = tmp_path / "out"
    assert cli(bad, "--out", out) == 2
    err = capsys.readouterr().err
    for msg in ("empty file", "not an image", "truncated", "cannot read video", "no input could be processed"):
        assert msg in err
    assert not out.exists() or not any(out.rglob("*"))


def test_cli_missing_path_and_nothing_to_do(cli, tmp_path, capsys):
    assert cli(tmp_path / "nope.png", "--out", tmp_path / "o") == 2
    assert "input not found" in capsys.readouterr().err
    assert cli("--out", tmp_path / "o") == 2
    assert "--camera" in capsys.readouterr().err


def test_cli_nobody_is_not_an_error(cli, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((240, 320, 3), 200, np.uint8)).save(tmp_path / "wall.png")
    assert cli(tmp_path / "wall.png", "--out", tmp_path / "o") == 0
    assert "nobody found" in capsys.readouterr().err
    rec = json.loads((tmp_path / "o/wall.json").read_text())
    assert rec["people"] == []
    assert (tmp_path / "o/wall_overlay.png").is_file()


def test_cli_good_and_bad_together(cli, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.png").write_bytes(BASKETBALL.read_bytes())
    (tmp_path / "in/b.png").write_text("nope")
    assert cli(tmp_path / "in", "--out", tmp_path / "o", "--boxes", "29,81,159,477") == 1  # some failed
    assert (tmp_path / "o/a.json").is_file() and not (tmp_path / "o/b.json").exists()
    assert "1 done" in capsys.readouterr().out


def test_predict_api(pipeline):
    import hmr
    from hmr.io.images import read_image

    people = hmr.predict(read_image(BASKETBALL), boxes=[[29, 81, 159, 477]], pipeline=pipeline)
    assert len(people) == 1 and people[0].mesh is not None
    assert people[0].mesh.vertices.shape == (1, pipeline.body_model.num_vertices, 3)
    with pytest.raises(ValueError, match="RGB image"):
        hmr.predict(np.zeros((4, 4, 7)), pipeline=pipeline)


@pytest.mark.slow
def test_video_tracks_and_smoothing(pipeline, tmp_path):
    """The woman walking through the whole clip keeps one track id; smoothing lowers joint acceleration."""
    import imageio.v2 as imageio

    rec = Demo(pipeline, tmp_path, OutputsSection(formats=("skinned", "bvh"))).video(CLIP, "clip", max_frames=12)
    assert rec["num_frames"] == 12
    full = [t for t in rec["people"] if t["first_frame"] == 0 and t["last_frame"] == 11]
    assert full, "someone visible in every frame keeps one track"
    for t in full:
        assert [f["frame"] for f in t["frames"]] == list(range(12))
    jit = rec["jitter_mm_per_frame2"]
    assert jit["smoothed"] < jit["raw"]
    npz = np.load(tmp_path / "clip.npz")
    assert npz["raw_joints"].shape[1:] == (pipeline.body_model.num_joints, 3)
    assert npz["smoothed_rotmats"].shape == npz["raw_rotmats"].shape
    assert len(npz["frame"]) == sum(len(t["frames"]) for t in rec["people"])
    reader = imageio.get_reader(tmp_path / "clip.mp4")
    assert reader.count_frames() == 12
    # one rigged file pair per track, keyed at its frames, its root on the toolkit's smoothed pelvis
    for t in rec["people"]:
        scene = gltf_scene((tmp_path / t["files"]["skinned"]).read_bytes())
        keyed = [f["frame"] for f in t["frames"] if f["smoothed"] is not None]
        np.testing.assert_allclose(scene["times"], np.array(keyed) / rec["fps"], atol=1e-5)
        rows = (npz["track_id"] == t["track_id"]) & npz["has_mesh"]
        np.testing.assert_allclose(scene["joints"][:, 0], npz["smoothed_joints"][rows][:, 0], atol=1e-4)
        assert t["files"]["bvh"] == f"clip_track{t['track_id']}.bvh" and (tmp_path / t["files"]["bvh"]).is_file()


def test_camera_stream_is_injectable_and_stoppable(pipeline, tmp_path):
    frames, fps = read_video(CLIP)
    seen = []

    def on_frame(picture, live_fps):
        seen.append(picture.shape)
        return len(seen) < 3  # the user closes the window after 3 frames

    d = Demo(pipeline, tmp_path, detect_every=5)
    rec = d.stream(frames, fps, "camera0", "camera 0", on_frame=on_frame)
    assert rec["num_frames"] == 3 and len(seen) == 3
    assert (tmp_path / "camera0.mp4").is_file() and (tmp_path / "camera0.json").is_file()


def test_unreadable_video(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot read video"):
        read_video(tmp_path / "x.mp4")


def test_network_checkpoint_path(tmp_path, pipeline):
    """--checkpoint: crops -> HMR 2.0 network -> full-image meshes (a tiny untrained network: plumbing only),
    and --refine fits from its output."""
    from hmr.models import create_model, save_model

    net = create_model("hmr2_vit_s", body_model=pipeline.body_model, backbone={"depth": 1}, head={"depth": 1})
    ckpt = save_model(net, tmp_path / "tiny.safetensors")
    img = BASKETBALL
    for refine in (False, True):
        cfg = PipelineConfig(
            network=NetworkSection(str(ckpt), refine), fitting=FAST_FIT, detector=DetectorSection(tiles=False)
        )
        frame = Demo(
            Pipeline(cfg, body_model=pipeline.body_model), tmp_path / str(refine), OutputsSection(pictures=False)
        ).image(img, "b")
        assert frame.method == ("network+refine" if refine else "network")
        assert len(frame.people) == 2 and all(q.mesh is not None for q in frame.people)
        m = frame.people[0].mesh
        assert m.cam_t_full.shape == (1, 3) and m.keypoints_2d_full.shape[1] == len(m.keypoint_names)
        rec = json.loads((tmp_path / str(refine) / "b.json").read_text())
        assert rec["method"] == frame.method
    with pytest.raises(ValueError, match="refine needs"):
        Pipeline(PipelineConfig(network=NetworkSection(refine=True)), body_model=pipeline.body_model)


@pytest.mark.slow
def test_default_settings_fit_within_5_percent():
    """What users get (default fitting settings): every person of basketball1.png within 5% of its box
    diagonal (median over confident landmarks)."""
    people = Pipeline()(_read(BASKETBALL)).people
    assert len(people) == 2
    for p in people:
        assert reprojection_error(p) < 0.05 * float(np.linalg.norm(p.box[2:] - p.box[:2]))


def _read(path):
    from hmr.io.images import read_image

    return read_image(path)


def test_cli_camera_headless(cli, monkeypatch, tmp_path):
    """--camera N --no-window with an injected frame source (the clip standing in for a webcam)."""
    monkeypatch.setattr(demo_mod, "camera_frames", lambda index: read_video(CLIP))
    assert cli("--camera", 0, "--no-window", "--max-frames", 3, "--out", tmp_path) == 0
    rec = json.loads((tmp_path / "camera0.json").read_text())
    assert rec["num_frames"] == 3 and rec["detect_every"] == 5 and rec["kind"] == "video"
    assert (tmp_path / "camera0.mp4").is_file()


def test_smpl_file_is_used_and_recorded(tmp_path):
    """--smpl: a user's body-model file replaces the default body model and outputs name it (here the
    default model's arrays saved under another name, standing in for the licensed SMPL file)."""
    from hmr.body import BodyModel

    model = BodyModel.default()
    model.name = "user-model"
    path = tmp_path / "user_model.npz"
    model.save_npz(path)
    from hmr.pipeline.config import BodySection

    p = Pipeline(PipelineConfig(body=BodySection(str(path)), fitting=FAST_FIT, detector=DetectorSection(tiles=False)))
    assert p.body_model.name == "user-model"
    Demo(p, tmp_path / "o", OutputsSection(pictures=False)).image(BASKETBALL, "b", boxes=_one_box())
    rec = json.loads((tmp_path / "o/b.json").read_text())
    assert rec["body_model"] == "user-model" and rec["people"][0]["status"] == "mesh"


def test_writer_thread_gives_the_sequential_outputs(cli, pipeline, tmp_path, monkeypatch):
    """``hmr demo`` writes each picture in a writer thread while computing the next: the files equal those of
    computing and writing one input after the other, and each write overlaps the next input's compute."""
    import threading

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (src / name).write_bytes(BASKETBALL.read_bytes())
    seq = Demo(pipeline, tmp_path / "seq")
    for name in ("a", "b", "c"):
        seq.image(src / f"{name}.png", name, boxes=_one_box())
    events, cond = [], threading.Condition()
    compute, write = Demo.compute_image, Demo.write_image

    def watched_compute(self, *args, **kwargs):
        with cond:
            events.append("compute")
            cond.notify_all()
        return compute(self, *args, **kwargs)

    def watched_write(self, job):
        with cond:
            k = events.count("write start")
            events.append("write start")
            # hold the write until the next input's compute starts (2 s at most: sequential code never does)
            cond.wait_for(lambda: events.count("compute") >= k + 2, timeout=2)
        write(self, job)
        with cond:
            events.append("write end")

    monkeypatch.setattr(Demo, "compute_image", watched_compute)
    monkeypatch.setattr(Demo, "write_image", watched_write)
    assert cli(src, "--out", tmp_path / "thr", "--boxes", "29,81,159,477") == 0
    # b and c were computed while a and b were being written
    computes = [i for i, e in enumerate(events) if e == "compute"]
    ends = [i for i, e in enumerate(events) if e == "write end"]
    assert len(computes) == len(ends) == 3 and computes[1] < ends[0] and computes[2] < ends[1]
    seq_files = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert seq_files == sorted(p.name for p in (tmp_path / "thr").iterdir())
    for name in ("a", "b", "c"):
        a, b = (json.loads((tmp_path / d / f"{name}.json").read_text()) for d in ("seq", "thr"))
        assert a["people"] == b["people"] and a["files"] == b["files"]
        with np.load(tmp_path / "seq" / f"{name}.npz") as x, np.load(tmp_path / "thr" / f"{name}.npz") as y:
            assert x.files == y.files and all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x.files)
