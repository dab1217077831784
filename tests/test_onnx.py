"""ONNX export (docs/models.md, "ONNX export"): onnxruntime gives what torch gives for every registered network
(reduced size) and for the body model, at batch 1 and 8 from one export; the commands; ``network.runtime=onnx``
in the pipeline; bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hmr.body import BodyModel
from hmr.body.export import BodyModelGraph, export_body
from hmr.cli import main as cli_main
from hmr.detection import Detections
from hmr.io import onnx as onnx_io
from hmr.io.images import read_image
from hmr.models import MODELS, create_model, list_models, load_model, save_model
from hmr.models.onnx import OnnxNetwork, export_network
from hmr.pipeline import Pipeline, PipelineConfig
from hmr.pipeline.config import DetectorSection, NetworkSection
from tests.test_models import make_body_model
from tests.test_registry import SMALL

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("rotmats", "betas", "pred_cam")


@pytest.fixture(scope="module")
def body_model():
    return make_body_model()


@pytest.fixture(scope="module")
def exported(body_model, tmp_path_factory):
    """name -> (torch model at reduced size, its export and verify's differences), made once per name."""
    folder, done = tmp_path_factory.mktemp("exports"), {}

    def get(name: str):
        if name not in done:
            torch.manual_seed(0)
            model = create_model(name, body_model=body_model, **SMALL[MODELS[name].family]).eval()
            done[name] = (model, *export_network(model, folder / f"{name}.onnx"))
        return done[name]

    return get


def _session(path, kind: str = "hmr-network"):
    return onnx_io.open_session(path, kind)[0]


def _dims(values) -> list[list]:
    return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]


@pytest.mark.parametrize("name", list_models())
def test_network_onnx_equals_torch(name, body_model, exported):
    """One export per registered name (reduced size): onnxruntime's rotations, betas and camera equal torch's
    within 1e-4 at batch 1 and 8, and OnnxNetwork (load_model of the .onnx) gives torch's MeshOutput."""
    model, path, diffs = exported(name)
    assert max(diffs.values()) < 1e-4 and sorted(diffs) == sorted(OUTPUTS)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in proto.graph.node} <= {""}, "custom op domains"
    assert proto.opset_import[0].version >= 17
    assert [i.name for i in proto.graph.input] == ["crops"] and [o.name for o in proto.graph.output] == list(OUTPUTS)
    assert {v.type.tensor_type.elem_type for v in [*proto.graph.input, *proto.graph.output]} == {onnx.TensorProto.FLOAT}
    s = model.config.image_size
    assert _dims(proto.graph.input) == [["batch", 3, s, s]]
    assert _dims(proto.graph.output) == [["batch", 24, 3, 3], ["batch", 10], ["batch", 3]]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["hmr.format"] == "hmr-network" and meta["hmr.architecture"] == MODELS[name].family
    assert meta["hmr.name"] == name and json.loads(meta["hmr.pixel_mean"])[0] == pytest.approx(255 * 0.485)
    assert (meta["hmr.body_model_data"] == "joints") == model.regress_reads_body
    assert model.regress_reads_body == (MODELS[name].family == "smplpose" and "baseline" not in name)

    session = _session(path)
    onnx_net = load_model(path, body_model=body_model)
    assert isinstance(onnx_net, OnnxNetwork) and onnx_net.config == model.config
    for batch in (1, 8):
        crops = model.normalize(torch.randint(0, 256, (batch, 3, s, s), generator=torch.Generator().manual_seed(batch)))
        with torch.no_grad():
            est = model.regress(crops)
            ref, got = model(crops), onnx_net(crops)
        for out, field in zip(session.run(list(OUTPUTS), {"crops": crops.numpy()}), OUTPUTS, strict=True):
            assert out.shape == tuple(getattr(est, field).shape)
            np.testing.assert_allclose(out, getattr(est, field).numpy(), rtol=0, atol=1e-4, err_msg=field)
        for field in ("vertices", "keypoints_3d", "keypoints_2d", "pred_cam", "betas", "body_pose"):
            torch.testing.assert_close(getattr(got, field), getattr(ref, field), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("which", ["default", "synthetic"])
def test_body_graph_equals_body_model_in_torch(which, dtype, atol):
    """The exportable textbook skinning equals BodyModel.forward's fast path (pose correctives: synthetic)."""
    bm = (BodyModel.default() if which == "default" else make_body_model()).to(dtype)
    g = torch.Generator().manual_seed(0)
    pose = (0.7 * torch.randn(8, 24, 3, generator=g)).to(dtype)
    betas = (2 * torch.randn(8, bm.num_betas, generator=g)).to(dtype)
    verts, joints = BodyModelGraph(bm, dtype)(pose, betas)
    ref = bm(global_orient=pose[:, :1], body_pose=pose[:, 1:], betas=betas)
    torch.testing.assert_close(verts, ref.vertices, rtol=0, atol=atol)
    torch.testing.assert_close(joints, ref.joints, rtol=0, atol=atol)


@pytest.mark.parametrize("which", ["default", "synthetic"])
def test_body_onnx_equals_body_model(which, body_model, tmp_path):
    bm = BodyModel.default() if which == "default" else body_model
    path, diffs = export_body(bm, tmp_path / "body.onnx")
    assert max(diffs.values()) < 1e-5
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["pose", "betas"]
    assert [o.name for o in proto.graph.output] == ["vertices", "joints"]
    nv = bm.num_vertices
    assert _dims(proto.graph.input) == [["batch", 24, 3], ["batch", 10]]
    assert _dims(proto.graph.output) == [["batch", nv, 3], ["batch", 24, 3]]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["hmr.format"] == "hmr-body-model" and meta["hmr.body_model"] == bm.name
    assert np.array_equal(np.array(json.loads(meta["hmr.faces"])), bm.faces.numpy())
    assert json.loads(meta["hmr.parents"]) == bm.parents
    session = _session(path, "hmr-body-model")
    for batch in (1, 8):
        g = torch.Generator().manual_seed(batch)
        pose, betas = 0.7 * torch.randn(batch, 24, 3, generator=g), 2 * torch.randn(batch, 10, generator=g)
        verts, joints = session.run(["vertices", "joints"], {"pose": pose.numpy(), "betas": betas.numpy()})
        with torch.no_grad():
            ref = bm(global_orient=pose[:, :1], body_pose=pose[:, 1:], betas=betas)
        np.testing.assert_allclose(verts, ref.vertices.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(joints, ref.joints.numpy(), rtol=0, atol=1e-4)


def test_big_models_write_external_data(body_model, tmp_path, monkeypatch):
    """Above the size limit the weights go to FILE.onnx.data beside the file; no temporary file is left."""
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    path, diffs = export_body(body_model, tmp_path / "body.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["body.onnx", "body.onnx.data"]
    assert path.stat().st_size < 1e6 < (tmp_path / "body.onnx.data").stat().st_size
    assert max(diffs.values()) < 1e-5
    onnx.checker.check_model(str(path))


def test_cli_export_of_a_saved_checkpoint(tmp_path, monkeypatch, capsys):
    """hmr model export-onnx on a .safetensors; the .onnx then loads by load_model and runs as the torch one;
    hmr model info reads it; hmr body export-onnx writes the default body model."""
    monkeypatch.delenv("HMR_SMPL_PATH", raising=False)
    torch.manual_seed(0)
    body = BodyModel.default()
    ckpt = save_model(create_model("hmr2_vit_s", body_model=body, **SMALL["hmr2"]), tmp_path / "tiny.safetensors")
    out = tmp_path / "onnx" / "tiny.onnx"
    assert cli_main(["model", "export-onnx", str(ckpt), "--out", str(out)]) == 0
    assert "max |difference|" in capsys.readouterr().out
    torch_net, onnx_net = load_model(ckpt, body_model=body), load_model(out, body_model=body)
    crops = torch_net.normalize(torch.randint(0, 256, (3, 3, 256, 256), generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.testing.assert_close(onnx_net(crops).vertices, torch_net(crops).vertices, rtol=0, atol=1e-4)
    assert cli_main(["model", "info", str(out)]) == 0
    assert "hmr2_vit_s" in capsys.readouterr().out
    assert cli_main(["model", "export-onnx", str(out), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already an ONNX file" in capsys.readouterr().err
    assert cli_main(["body", "export-onnx", "--out", str(tmp_path / "body.onnx")]) == 0
    assert "hmr-anny-v1" in capsys.readouterr().out
    meta = onnx_io.read_metadata(tmp_path / "body.onnx", "hmr-body-model")
    assert meta["hmr.num_vertices"] == str(body.num_vertices)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A small HMR 2.0 network as .safetensors and as .onnx, for the default body model."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    net = create_model("hmr2_vit_s", body_model=BodyModel.default(), **SMALL["hmr2"]).eval()
    return save_model(net, folder / "tiny.safetensors"), export_network(net, folder / "tiny.onnx", verify=False)[0]


def test_pipeline_onnx_runtime_gives_the_torch_meshes(tiny_checkpoints, monkeypatch):
    """network.runtime=onnx with the exported file: the same meshes as the torch network (1e-4 m) on a real
    picture with user boxes."""
    monkeypatch.delenv("HMR_SMPL_PATH", raising=False)
    ckpt, exported = tiny_checkpoints
    image = read_image(ROOT / "examples" / "basketball1.png")
    boxes = Detections.from_boxes([[30, 82, 160, 478], [437, 19, 638, 473]])
    frames = {}
    for runtime, path in (("torch", ckpt), ("onnx", exported)):
        net = NetworkSection(str(path), runtime=runtime, precision="fp32")  # bf16 autocast would differ by more
        cfg = PipelineConfig(network=net, detector=DetectorSection(tiles=False))
        pipe = Pipeline(cfg)
        assert isinstance(pipe.network, OnnxNetwork) == (runtime == "onnx")
        frames[runtime] = pipe(image, boxes=boxes)
    a, b = frames["torch"], frames["onnx"]
    assert a.method == b.method == "network" and len(a.people) == len(b.people) == 2
    for p, q in zip(a.people, b.people, strict=True):
        for field in ("vertices", "cam_t_full", "keypoints_2d_full"):
            x, y = getattr(p.mesh, field), getattr(q.mesh, field)
            torch.testing.assert_close(y, x, rtol=0, atol=1e-4 if field != "keypoints_2d_full" else 1e-2)


def test_runtime_and_checkpoint_must_agree(tiny_checkpoints):
    ckpt, exported = tiny_checkpoints
    with pytest.raises(ValueError, match=r"runtime=onnx .*hmr model export-onnx"):
        Pipeline(PipelineConfig(network=NetworkSection(str(ckpt), runtime="onnx")))
    with pytest.raises(ValueError, match="runtime=onnx .*hmr model export-onnx hmr2_vit_h"):
        Pipeline(PipelineConfig(network=NetworkSection("hmr2_vit_h", runtime="onnx")))
    with pytest.raises(ValueError, match=r"runtime=torch cannot run .*tiny\.onnx"):
        Pipeline(PipelineConfig(network=NetworkSection(str(exported), runtime="torch")))


def test_bad_onnx_files(tiny_checkpoints, body_model, exported, tmp_path):
    """One line naming the file: missing, not ONNX, ONNX not made by hmr, the wrong kind, a body model that
    differs from the one an SMPL-Pose graph holds; config overrides do not apply to an export."""
    tiny_onnx = tiny_checkpoints[1]
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        load_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match=r"junk\.onnx: not a readable ONNX file"):
        load_model(tmp_path / "junk.onnx")
    with pytest.raises(ValueError, match=r"junk\.onnx: not a readable ONNX file"):
        onnx_io.read_metadata(tmp_path / "junk.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=r"other\.onnx: an ONNX file not made by hmr"):
        load_model(tmp_path / "other.onnx")
    export_body(body_model, tmp_path / "body.onnx", verify=False)
    with pytest.raises(ValueError, match=r"body\.onnx: holds 'hmr-body-model', not 'hmr-network'"):
        load_model(tmp_path / "body.onnx")
    with pytest.raises(ValueError, match="overrides"):
        load_model(tiny_onnx, head={"depth": 2})

    path = exported("smplpose_w32")[1]
    with pytest.raises(ValueError, match=r"smplpose_w32\.onnx: its graph holds the joints of body model 'synthetic'"):
        load_model(path, body_model=BodyModel.default())
