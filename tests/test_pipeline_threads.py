"""A Pipeline shared by threads (a web server's workers) gives what a sequential run gives."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from hmr.io.images import read_image
from hmr.pipeline import Pipeline, PipelineConfig
from hmr.pipeline.config import DetectorSection, ThreadsSection
from tests.test_demo import FAST_FIT

ROOT = Path(__file__).resolve().parent.parent


def _summary(frame) -> list[tuple]:
    return [(p.box.tolist(), None if p.mesh is None else p.mesh.vertices.numpy().copy()) for p in frame.people]


def test_two_threads_at_once_equal_a_sequential_run():
    pipeline = Pipeline(PipelineConfig(fitting=FAST_FIT, detector=DetectorSection(tiles=False)))
    images = [read_image(ROOT / "examples" / n) for n in ("basketball1.png", "astronaut.jpg")]
    sequential = [_summary(pipeline(im)) for im in images]
    results: dict[int, list] = {}
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()  # both threads call at the same moment
        results[i] = [_summary(pipeline(images[i])) for _ in range(2)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, seq in enumerate(sequential):
        assert seq and any(v is not None for _, v in seq)
        for run in results[i]:
            assert [b for b, _ in run] == [b for b, _ in seq]
            for (_, a), (_, b) in zip(run, seq, strict=True):
                assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))


def test_stages_run_with_their_torch_thread_counts(monkeypatch):
    """threads.fitting holds while fitting and the count is restored afterwards (also after an error)."""
    import pytest
    import torch

    from hmr.pipeline.image import torch_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    seen = []
    pipeline = Pipeline(PipelineConfig(fitting=FAST_FIT, detector=DetectorSection(tiles=False),
                                       threads=ThreadsSection(fitting=other)))  # fmt: skip
    fit = Pipeline._fit_groups
    monkeypatch.setattr(Pipeline, "_fit_groups", lambda self, *a: seen.append(torch.get_num_threads()) or fit(self, *a))
    frame = pipeline(read_image(ROOT / "examples" / "astronaut.jpg"))
    assert frame.people and seen == [other] and torch.get_num_threads() == before
    # the detector's onnxruntime threads: threads.detector (default 1), 0 leaving onnxruntime's own choice
    assert pipeline.detector.session.get_session_options().intra_op_num_threads == 1
    default = Pipeline(PipelineConfig(fitting=FAST_FIT, threads=ThreadsSection(detector=0)))
    assert default.detector.session.get_session_options().intra_op_num_threads == 0
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError
    assert torch.get_num_threads() == before
    with torch_threads(0):
        assert torch.get_num_threads() == before


def test_video_run_overlapping_the_2d_stage_equals_step_by_step():
    """VideoSession.run observes frame t+1 in a second thread while frame t is fitted: every frame's tracks,
    boxes, fitted and smoothed bodies are those of VideoSession.step, bit for bit."""
    from hmr.io.video import read_video
    from hmr.pipeline.video import VideoSession

    pipeline = Pipeline(PipelineConfig(fitting=FAST_FIT))
    frames = [f for _, f in zip(range(10), read_video(ROOT / "tests/data/vtest_clip.mp4")[0], strict=False)]
    step = VideoSession(pipeline, 10.0, detect_every=3)
    stepped = [step.step(f) for f in frames]
    run = VideoSession(pipeline, 10.0, detect_every=3)
    ran = list(run.run(iter(frames)))
    assert len(ran) == len(frames) and run.frames == step.frames == len(frames)
    for (frame_a, smooth_a), (image, frame_b, smooth_b), original in zip(stepped, ran, frames, strict=True):
        assert image is original
        for a, b in zip(_summary(frame_a), _summary(frame_b), strict=True):
            assert a[0] == b[0] and (a[1] is None) == (b[1] is None) and (a[1] is None or np.array_equal(a[1], b[1]))
        assert smooth_a.keys() == smooth_b.keys() and all(np.array_equal(smooth_a[k], smooth_b[k]) for k in smooth_a)
        # the person masks (a full image each) are dropped once fitted, also from the tracker's landmark boxes
        assert all(p.keypoints is None or p.keypoints.mask is None for p in frame_b.people)
    assert run._kp and all(kp.mask is None for kp in run._kp.values())
    assert len(step.rows) == len(run.rows) and any(r["raw"] is not None for r in run.rows)
    for a, b in zip(step.rows, run.rows, strict=True):
        assert (a["frame"], a["track_id"]) == (b["frame"], b["track_id"])
        if a["raw"] is not None:
            assert all(np.array_equal(a["raw"][k], b["raw"][k]) for k in ("rotmats", "betas", "cam_t"))


def test_video_run_defers_new_tracks_cold_fits():
    """run(defer_cold=True): frames go on while a new track's cold fit runs (held here until released); the
    track has landmarks and no mesh until then, the cold fit is the one step() makes in the track's first frame,
    and the frame after it ends warm-starts from it."""
    import threading

    import torch

    from hmr.io.video import read_video
    from hmr.pipeline.video import VideoSession

    threads = torch.get_num_threads()
    pipeline = Pipeline(PipelineConfig(fitting=FAST_FIT, threads=ThreadsSection(fitting=1 if threads != 1 else 2)))
    frames = [f for _, f in zip(range(6), read_video(ROOT / "tests/data/vtest_clip.mp4")[0], strict=False)]
    first, _ = VideoSession(pipeline, 10.0, detect_every=3).step(frames[0])
    release, cold = threading.Event(), []
    fit_cold = pipeline.fit_cold

    def held(image, observations):
        assert release.wait(60)
        cold.append(fit_cold(image, observations))
        return cold[-1]

    pipeline.fit_cold = held
    session = VideoSession(pipeline, 10.0, detect_every=3)
    run = session.run(iter(frames), defer_cold=True)
    waiting = [next(run) for _ in range(3)]  # would block here if a frame waited for the cold fit
    for _, frame, smoothed in waiting:
        assert frame.people and not smoothed
        assert all(p.mesh is None and p.keypoints is not None and p.keypoints.mask is None for p in frame.people)
        assert {p.status for p in frame.people} == {"landmarks"}
    tracks = {p.track_id for p in waiting[0][1].people}
    assert set(session._pending) == tracks
    release.set()
    for job, _ in list(session._pending.values()):
        job.result()
    _, frame, smoothed = next(run)
    assert {p.track_id for p in frame.people if p.mesh is not None} == tracks == set(smoothed)
    assert len(cold) == 1 and len(cold[0]) == len(first.people)
    for mesh, person in zip(cold[0], first.people, strict=True):
        assert np.array_equal(mesh.vertices.numpy(), person.mesh.vertices.numpy())
    rest = list(run)
    assert len(rest) == 2 and all(p.mesh is not None for _, f, _ in rest for p in f.people if p.track_id in tracks)
    record, _ = session.records("clip", pipeline.body_model.faces.cpu().numpy())
    status = {(f["frame"], p["track_id"]): f["status"] for p in record["people"] for f in p["frames"]}
    assert {status[i, t] for i in range(3) for t in tracks if (i, t) in status} == {"landmarks"}
    assert {status[3, t] for t in tracks} == {"mesh"}
    assert torch.get_num_threads() == threads  # each thread's fits gave back its own count


def test_video_run_defers_nothing_with_a_network(tmp_path):
    """With a network every person starts from its output: run(defer_cold=True) fits nothing cold beside the
    frames, and everyone with landmarks has a mesh from the first frame (a tiny untrained network: plumbing)."""
    from hmr.io.video import read_video
    from hmr.models import create_model, save_model
    from hmr.pipeline.config import NetworkSection
    from hmr.pipeline.video import VideoSession

    body = Pipeline(PipelineConfig(fitting=FAST_FIT)).body_model
    net = create_model("hmr2_vit_s", body_model=body, backbone={"depth": 1}, head={"depth": 1})
    ckpt = save_model(net, tmp_path / "tiny.safetensors")
    pipeline = Pipeline(PipelineConfig(network=NetworkSection(str(ckpt)), fitting=FAST_FIT), body_model=body)
    frames = [f for _, f in zip(range(2), read_video(ROOT / "tests/data/vtest_clip.mp4")[0], strict=False)]
    calls = []
    pipeline.fit_cold = lambda *a: calls.append(a)
    ran = list(VideoSession(pipeline, 10.0).run(iter(frames), defer_cold=True))
    assert len(ran) == 2 and ran[0][1].people and not calls
    assert all(p.mesh is not None for _, frame, _ in ran for p in frame.people if p.keypoints is not None)
