"""Skinned glTF (.glb) and BVH exports of tracked people: the rig against the body model, the files parsed
back with numpy, the Khronos validator, and Blender's importers (joint positions read back out of Blender).

Blender (``.venv-bpy``) and the validator (``.node``) come from ``bash scripts/setup_env.sh``; without them
these tests skip, except under CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr.body import BodyModel
from hmr.geometry import Camera
from hmr.io import bvh as bvh_mod
from hmr.io import gltf as gltf_mod
from hmr.io.animation import Animation, matrix_to_quaternion, quaternion_to_matrix, slerp
from hmr.io.bvh import bvh_text, write_bvh, zxy_matrix
from hmr.io.exports import CAMERA_TO_MESH
from hmr.io.gltf import accessor_array, glb_bytes, read_glb, write_skinned_glb
from hmr.outputs import MeshOutput
from hmr.pipeline.animation import image_animation, video_animations
from tests.synthetic_smpl import synthetic_smpl_arrays
from tests.synthetic_walk import walk_pose

ROOT = Path(__file__).resolve().parent.parent
BPY_PYTHON = ROOT / ".venv-bpy/bin/python"
VALIDATOR = ROOT / ".node/node_modules/gltf-validator"
CLIP = ROOT / "tests/data/vtest_clip.mp4"
FPS = 25.0
NUM_FRAMES = 25
START = 3  # the walk's track starts at this video frame (files key it at START / FPS seconds)
GAP = START + 12  # frame left out of the walk's keys: files interpolate it
# Blender's world is z up: Blender (x, y, z) = file (x, -z, y) for both importers (glTF's fixed y-up ->
# z-up conversion; the BVH importer's axis_forward="-Z", axis_up="Y"), so camera = CAMERA_TO_MESH @ file
# = (x, -z_blender, y_blender).
BLENDER_TO_CAMERA = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def _need(path: Path, what: str, program: str | None = None) -> None:
    """Skip (fail under CI=true) when a tool made by scripts/setup_env.sh is missing."""
    if path.exists() and (program is None or shutil.which(program)):
        return
    msg = f"{what} not installed ({path}{', ' + program if program else ''}); run: bash scripts/setup_env.sh"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


# ----------------------------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def models() -> dict[str, BodyModel]:
    smpl = BodyModel.from_arrays(synthetic_smpl_arrays(num_vertices=6890), "synthetic SMPL")
    return {"bundled": BodyModel.default(), "smpl": smpl}


def walk_rows(model: BodyModel, track_id: int = 2, seed: int = 0) -> list[dict]:
    """VideoSession-like rows of a synthetic walk (frame GAP missing), each frame with its own betas and
    the toolkit's joints of those betas."""
    rot, transl = walk_pose(NUM_FRAMES, FPS, seed)
    betas = np.random.default_rng(seed).normal(scale=0.6, size=(1, model.num_betas))
    betas = betas + np.random.default_rng(seed + 1).normal(scale=0.05, size=(NUM_FRAMES, model.num_betas))
    with torch.no_grad():
        joints = model.posed_joints(torch.from_numpy(rot).float(), torch.from_numpy(betas).float()).numpy() + transl[:, None]
    return [{"frame": START + i, "track_id": track_id, "raw": None,
             "smoothed": {"rotmats": rot[i].astype(np.float32), "betas": betas[i].astype(np.float32),
                          "cam_t": transl[i].astype(np.float32), "joints": joints[i].astype(np.float32)}}
            for i in range(NUM_FRAMES) if START + i != GAP]  # fmt: skip


CAMERA = Camera.full_image(640, 480, 800.0)


@pytest.fixture(scope="module")
def walks(models):
    """name -> PersonAnimation of the walk, for both body models."""
    out = {}
    for name, model in models.items():
        out[name] = video_animations(walk_rows(model), model, FPS, camera=CAMERA, colors={2: (0.9, 0.4, 0.1)})[2]
    return out


@pytest.fixture(scope="module")
def files(walks, tmp_path_factory):
    """The walks and a single-image person written as .glb and .bvh."""
    out = tmp_path_factory.mktemp("anim")
    paths = {}
    for name, person in walks.items():
        write_skinned_glb(out / f"{name}.glb", person.animation)
        write_bvh(out / f"{name}.bvh", person.animation)
        paths[name] = (out / f"{name}.glb", out / f"{name}.bvh")
    return paths


def _mesh_output(model: BodyModel, seed: int = 3) -> MeshOutput:
    rot, transl = walk_pose(1, FPS, seed)
    go, pose = torch.from_numpy(rot[:, :1]).float(), torch.from_numpy(rot[:, 1:]).float()
    betas = torch.randn(1, model.num_betas, generator=torch.Generator().manual_seed(seed)) * 0.5
    with torch.no_grad():
        body = model(go, pose, betas)
    return MeshOutput(go, pose, betas, body.vertices, body.joints, cam_t_full=torch.from_numpy(transl).float())


# ---------------------------------------------------------------------------------- readers for the tests
def gltf_scene(data: bytes):
    """Parse a .glb back: its document, accessors by name, and per key the camera-frame joints and the
    skinned vertices computed from the file alone (node TRS + animation + skin), as a viewer does."""
    doc, binary = read_glb(data)

    def acc(i):
        return accessor_array(doc, binary, i).astype(np.float64)

    prim = doc["meshes"][0]["primitives"][0]
    skin = doc["skins"][0]
    anim = doc["animations"][0]
    times = acc(anim["samplers"][0]["input"])
    nodes = doc["nodes"]
    trs = [{"translation": np.array(n.get("translation", [0, 0, 0]), float)[None].repeat(len(times), 0),
            "rotation": np.array(n.get("rotation", [0, 0, 0, 1]), float)[None].repeat(len(times), 0)}
           for n in nodes]  # fmt: skip
    for ch in anim["channels"]:
        trs[ch["target"]["node"]][ch["target"]["path"]] = acc(anim["samplers"][ch["sampler"]]["output"])
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    world = {}

    def world_of(i):
        if i not in world:
            q = trs[i]["rotation"]  # x, y, z, w
            m = np.tile(np.eye(4), (len(times), 1, 1))
            m[:, :3, :3] = quaternion_to_matrix(np.roll(q, 1, -1))
            m[:, :3, 3] = trs[i]["translation"]
            world[i] = m if i not in parent else world_of(parent[i]) @ m
        return world[i]

    joints_file = np.stack([world_of(j)[:, :3, 3] for j in skin["joints"]], 1)
    ibm = acc(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    jm = np.stack([world_of(j) @ ibm[k] for k, j in enumerate(skin["joints"])], 1)  # (T, J, 4, 4)
    pos = acc(prim["attributes"]["POSITION"])
    sets = sorted(k for k in prim["attributes"] if k.startswith("JOINTS_"))
    w = np.zeros((len(pos), len(skin["joints"])))
    for s in sets:
        js, ws = accessor_array(doc, binary, prim["attributes"][s]), acc(prim["attributes"]["WEIGHTS" + s[6:]])
        for c in range(4):
            w[np.arange(len(pos)), js[:, c]] += ws[:, c]
    blended = np.einsum("vj,tjab->tvab", w, jm)
    verts_file = np.einsum("tvab,vb->tva", blended[..., :3, :3], pos) + blended[..., :3, 3]
    return {"doc": doc, "times": times, "positions": pos, "faces": accessor_array(doc, binary, prim["indices"]),
            "weights": w, "joints": joints_file @ CAMERA_TO_MESH.T, "vertices": verts_file @ CAMERA_TO_MESH.T,
            "sets": sets}  # fmt: skip


def parse_bvh(text: str):
    """A small BVH reader: joint names, parents, offsets, channels, end sites, frame time and motion rows;
    ``joints()`` gives every row's joint positions (file frame, file units) by forward kinematics."""
    tokens = text.split()
    names, parents, offsets, channels, ends = [], [], [], [], {}
    stack, i = [], 0
    assert tokens[0] == "HIERARCHY"
    i = 1
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            i += 2
        elif tok == "End":
            assert tokens[i + 1] == "Site"
            assert tokens[i + 2] == "{" and tokens[i + 3] == "OFFSET"
            ends[names[stack[-1]]] = np.array(tokens[i + 4 : i + 7], float)
            assert tokens[i + 7] == "}"
            i += 8
        elif tok == "{":
            stack.append(len(names) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            offsets.append(np.array(tokens[i + 1 : i + 4], float))
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            channels.append(tokens[i + 2 : i + 2 + n])
            i += 2 + n
        else:
            raise AssertionError(f"unexpected token {tok!r}")
    assert not stack
    assert tokens[i + 1] == "Frames:" and tokens[i + 3] == "Frame" and tokens[i + 4] == "Time:"
    nframes, frame_time = int(tokens[i + 2]), float(tokens[i + 5])
    motion = np.array(tokens[i + 6 :], float).reshape(nframes, -1)
    assert motion.shape[1] == sum(len(c) for c in channels)

    def axis(a, angle):
        c, s = np.cos(angle), np.sin(angle)
        one, zero = np.ones_like(c), np.zeros_like(c)
        m = {"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]], "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
             "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[a]  # fmt: skip
        return np.moveaxis(np.array(m), (0, 1), (-2, -1))

    def joints():
        col, world = 0, []
        for j, chans in enumerate(channels):
            rot, pos = np.tile(np.eye(3), (nframes, 1, 1)), np.zeros((nframes, 3)) + offsets[j]
            for c in chans:
                if c.endswith("position"):
                    pos[:, "XYZ".index(c[0])] = motion[:, col] + offsets[j]["XYZ".index(c[0])]
                else:
                    rot = rot @ axis(c[0], np.radians(motion[:, col]))  # intrinsic, in the listed order
                col += 1
            m = np.tile(np.eye(4), (nframes, 1, 1))
            m[:, :3, :3], m[:, :3, 3] = rot, pos
            world.append(m if parents[j] < 0 else world[parents[j]] @ m)
        return np.stack(world, 1)[..., :3, 3]

    return {"names": names, "parents": parents, "offsets": np.array(offsets), "channels": channels, "ends": ends,
            "frame_time": frame_time, "motion": motion, "joints": joints}  # fmt: skip


# ------------------------------------------------------------------------------------- rig and model
@pytest.mark.parametrize("name", ["bundled", "smpl"])
def test_rig_joints_equal_the_body_models(models, walks, name):
    """The Animation's forward kinematics = the body model's posed_joints of the track's shape + the root
    translation; with one shape over the track they equal the toolkit's own per-frame joints."""
    model, person = models[name], walks[name]
    a = person.animation
    assert a.num_frames == NUM_FRAMES and len(a.frames) == NUM_FRAMES - 1 and GAP not in a.frames
    rot = torch.from_numpy(a.rotations).float()
    betas = torch.from_numpy(person.betas).float().expand(len(rot), -1)
    with torch.no_grad():
        model_joints = model.posed_joints(rot, betas).numpy()
    model_joints += (a.root_positions - model_joints[:, 0])[:, None]
    np.testing.assert_allclose(a.joint_positions(), model_joints, atol=2e-6)
    np.testing.assert_allclose(person.joints, model_joints, atol=2e-6)
    np.testing.assert_allclose(a.root_positions, person.frame_joints[:, 0], atol=1e-6)  # pelvis where placed
    rows = walk_rows(model)
    np.testing.assert_allclose(person.betas, np.mean([r["smoothed"]["betas"] for r in rows], 0), atol=1e-6)
    # One shape for all frames: the joints then are the toolkit's exactly.
    for r in rows:
        r["smoothed"]["betas"] = rows[0]["smoothed"]["betas"]
        with torch.no_grad():
            j = model.posed_joints(torch.from_numpy(r["smoothed"]["rotmats"])[None], torch.from_numpy(r["smoothed"]["betas"])[None])
        r["smoothed"]["joints"] = (j[0].numpy() + r["smoothed"]["cam_t"]).astype(np.float32)
    same = video_animations(rows, model, FPS)[2]
    np.testing.assert_allclose(same.animation.joint_positions(), np.stack([r["smoothed"]["joints"] for r in rows]), atol=2e-6)
    # and without pose correctives (bundled model) its skinned vertices are the model's
    if model.posedirs is None:
        with torch.no_grad():
            out = model(torch.from_numpy(np.stack([r["smoothed"]["rotmats"][:1] for r in rows])),
                        torch.from_numpy(np.stack([r["smoothed"]["rotmats"][1:] for r in rows])),
                        torch.from_numpy(np.stack([r["smoothed"]["betas"] for r in rows])),
                        torch.from_numpy(np.stack([r["smoothed"]["cam_t"] for r in rows])))  # fmt: skip
        np.testing.assert_allclose(same.animation.skinned_vertices(), out.vertices.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["bundled", "smpl"])
def test_image_person_is_a_single_key(models, name):
    model = models[name]
    mesh = _mesh_output(model)
    person = image_animation(mesh, model, CAMERA, color=(0.2, 0.6, 0.3))
    a = person.animation
    assert a.rotations.shape == (1, model.num_joints, 3, 3) and a.frames.tolist() == [0]
    with torch.no_grad():
        ref = model.posed_joints(torch.cat([mesh.global_orient, mesh.body_pose], 1), mesh.betas)[0] + mesh.cam_t_full[0]
    np.testing.assert_allclose(a.joint_positions()[0], ref.numpy(), atol=2e-6)
    np.testing.assert_allclose(person.joints[0], ref.numpy(), atol=2e-6)
    skinned = a.skinned_vertices()[0]
    toolkit = (mesh.vertices[0] + mesh.cam_t_full[0]).numpy()
    diff = np.linalg.norm(skinned - toolkit, axis=1)
    if model.posedirs is None:
        assert diff.max() < 1e-5
    else:
        assert diff.max() > 1e-3  # SMPL layout: the file lacks the pose correctives (documented)
    doc, _ = read_glb(glb_bytes(a))
    assert doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]["count"] == 1
    assert parse_bvh(bvh_text(a))["motion"].shape[0] == 1
    with pytest.raises(ValueError, match="batch-1"):
        image_animation(MeshOutput.cat([mesh, mesh]), model)


def test_interpolation_between_keys_is_slerp(walks):
    a = walks["bundled"].animation
    rot, pos = a.sample([GAP])
    k = list(a.frames).index(GAP - 1)
    q0, q1 = matrix_to_quaternion(a.rotations[k]), matrix_to_quaternion(a.rotations[k + 1])
    np.testing.assert_allclose(rot[0], quaternion_to_matrix(slerp(q0, q1, 0.5)), atol=1e-12)
    np.testing.assert_allclose(pos[0], a.root_positions[k : k + 2].mean(0), atol=1e-12)
    full_rot, _ = a.sample()
    np.testing.assert_allclose(full_rot[a.frames - a.frames[0]], a.rotations, atol=1e-12)
    with pytest.raises(ValueError, match="outside the keyed range"):
        a.sample([START + NUM_FRAMES])


# ----------------------------------------------------------------------------------------- glTF
@pytest.mark.parametrize("name", ["bundled", "smpl"])
def test_glb_parses_back_and_skins_like_the_rig(walks, files, name):
    """GLB container, accessors and the skinning math from the file alone reproduce the rig's joints and its
    linear-blend-skinned vertices at every key (camera frame after undoing CAMERA_TO_MESH)."""
    a = walks[name].animation
    data = files[name][0].read_bytes()
    assert data[:4] == b"glTF" and int.from_bytes(data[8:12], "little") == len(data) and len(data) % 4 == 0
    jlen = int.from_bytes(data[12:16], "little")
    assert jlen % 4 == 0 and data[16:20] == b"JSON" and data[20 + jlen + 4 : 20 + jlen + 8] == b"BIN\0"
    s = gltf_scene(data)
    doc = s["doc"]
    assert all(v["byteOffset"] % 4 == 0 for v in doc["bufferViews"])
    assert a.frames[0] == START
    np.testing.assert_allclose(s["times"], a.frames / FPS, atol=1e-6)
    np.testing.assert_allclose(s["positions"], a.vertices, atol=1e-6)
    np.testing.assert_array_equal(s["faces"].reshape(-1, 3), a.faces)
    assert [doc["nodes"][j]["name"] for j in doc["skins"][0]["joints"]] == list(a.joint_names)
    np.testing.assert_allclose(s["joints"], a.joint_positions(), atol=1e-5)
    np.testing.assert_allclose(s["weights"], a.weights, atol=1e-6)  # <= 8 influences: all of them
    np.testing.assert_allclose(s["vertices"], a.skinned_vertices(), atol=2e-5)
    mat = doc["materials"][doc["meshes"][0]["primitives"][0]["material"]]
    np.testing.assert_allclose(mat["pbrMetallicRoughness"]["baseColorFactor"], [0.9, 0.4, 0.1, 1.0])
    cam = doc["cameras"][0]["perspective"]
    assert cam["yfov"] == pytest.approx(2 * np.arctan(240 / 800)) and cam["aspectRatio"] == pytest.approx(640 / 480)
    cam_node = next(n for n in doc["nodes"] if "camera" in n)
    assert not {"translation", "rotation", "matrix"} & set(cam_node)  # at the origin, looking along -z
    # The nodes' own transforms (shown without animation) are the first key's pose.
    q = np.array([doc["nodes"][j]["rotation"] for j in doc["skins"][0]["joints"]])
    np.testing.assert_allclose(quaternion_to_matrix(np.roll(q, 1, -1))[1:], a.rotations[0, 1:], atol=1e-6)


def test_four_influences_are_the_largest_renormalised(walks):
    """max_influences=4: one JOINTS/WEIGHTS set, equal to the first set of the default 8-influence file; the
    vertex error it causes on the bundled model stays small on average (measured: docs/outputs.md)."""
    a = walks["bundled"].animation
    four, eight = gltf_scene(glb_bytes(a, max_influences=4)), gltf_scene(glb_bytes(a))
    assert four["sets"] == ["JOINTS_0"] and eight["sets"] == ["JOINTS_0", "JOINTS_1"]
    np.testing.assert_allclose(four["weights"].sum(1), 1, atol=1e-6)
    err = np.linalg.norm(four["vertices"] - a.skinned_vertices(), axis=-1)
    assert err.mean() < 1e-4 and err.max() < 0.03
    joints, weights = gltf_mod.skin_influences(a.weights, 8)
    assert (np.diff(weights, axis=1) <= 0).all()  # largest first
    ref = np.zeros_like(a.weights)
    np.add.at(ref, (np.arange(len(ref))[:, None], joints[:, :4]), weights[:, :4])  # unused slots add 0 to joint 0
    np.testing.assert_allclose(four["weights"], ref / ref.sum(1, keepdims=True), atol=1e-6)
    smpl_like = gltf_scene(glb_bytes(walks["smpl"].animation))
    assert smpl_like["sets"] == ["JOINTS_0"]  # SMPL's weights have at most 4 influences: one set suffices


def test_quaternions_stay_in_one_hemisphere(walks):
    """A root turning through 180 degrees: consecutive file quaternions keep positive dot products (a
    viewer that interpolates components then takes the short way) and still give the rig's joints."""
    a = walks["smpl"].animation
    n = len(a.frames)
    yaw = np.linspace(2.5, 3.8, n)  # through pi, where w changes sign
    spin = np.zeros((n, 3, 3))
    spin[:, 0, 0] = spin[:, 2, 2] = np.cos(yaw)
    spin[:, 0, 2], spin[:, 2, 0], spin[:, 1, 1] = np.sin(yaw), -np.sin(yaw), 1
    rot = a.rotations.copy()
    rot[:, 0] = CAMERA_TO_MESH @ spin  # file-frame root rotation = spin about the vertical
    turned = Animation(**{**vars(a), "rotations": rot})
    s = gltf_scene(glb_bytes(turned))
    anim = s["doc"]["animations"][0]
    q = accessor_array(s["doc"], read_glb(glb_bytes(turned))[1], anim["samplers"][1]["output"])
    assert (np.sum(q[1:] * q[:-1], -1) > 0).all() and (q[:, 3] < 0).any() and (q[:, 3] > 0).any()
    np.testing.assert_allclose(s["joints"], turned.joint_positions(), atol=1e-5)


# ----------------------------------------------------------------------------------------- BVH
@pytest.mark.parametrize("name", ["bundled", "smpl"])
def test_bvh_parses_back_to_the_rig(walks, files, name):
    a = walks[name].animation
    text = files[name][1].read_text()
    b = parse_bvh(text)
    order = bvh_mod.hierarchy_order(a.parents)  # depth first: the file's joint order
    assert sorted(order) == list(range(len(a.parents)))
    assert b["names"] == [a.joint_names[j] for j in order]
    assert [order[p] if p >= 0 else -1 for p in b["parents"]] == a.parents[order].tolist()
    assert b["channels"][0] == list(bvh_mod.ROOT_CHANNELS)
    assert all(c == list(bvh_mod.JOINT_CHANNELS) for c in b["channels"][1:])
    assert b["frame_time"] == pytest.approx(1 / FPS) and len(b["motion"]) == NUM_FRAMES
    assert set(b["ends"]) == {a.joint_names[j] for j in range(len(a.parents)) if j not in a.parents}
    offsets = (a.rest_joints - a.rest_joints[a.parents])[order]
    np.testing.assert_allclose(b["offsets"][1:] / 100, offsets[1:], atol=1e-7)
    np.testing.assert_array_equal(b["offsets"][0], 0)
    joints = b["joints"]() / 100 @ CAMERA_TO_MESH.T  # centimetres, y-up file frame -> camera frame, metres
    np.testing.assert_allclose(joints, a.joint_positions(a.all_frames)[:, order], atol=1e-6)  # gap row included
    assert not np.any(np.abs(np.diff(b["motion"][:, 3:], axis=0)) > 180)  # angles unwrapped


def test_euler_order_round_trips_and_handles_gimbal_lock():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-3, 3, (500, 3))
    angles[:, 1] = np.clip(angles[:, 1], -1.5, 1.5)
    m = zxy_matrix(angles)
    np.testing.assert_allclose(zxy_matrix(bvh_mod.euler_zxy(m)), m, atol=1e-12)
    lock = zxy_matrix(np.array([[0.4, np.pi / 2, -0.7], [1.0, -np.pi / 2, 0.2]]))
    np.testing.assert_allclose(zxy_matrix(bvh_mod.euler_zxy(lock)), lock, atol=1e-9)
    # the order is z then x then y: Rz Rx Ry, not another product
    z, x, y = 0.3, 0.5, 0.7
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    np.testing.assert_allclose(zxy_matrix([z, x, y]), rz @ rx @ ry, atol=1e-12)


# ---------------------------------------------------------------------------- errors and atomic writes
def test_bad_shapes_are_clear_errors(walks):
    a = walks["smpl"].animation
    base = {f: getattr(a, f) for f in ("vertices", "faces", "weights", "parents", "joint_names", "rest_joints",
                                       "rotations", "root_positions", "frames", "fps")}  # fmt: skip

    def make(**kw):
        return Animation(**{**base, **kw})

    cases = {
        "vertices has shape": {"vertices": a.vertices[:, :2]},
        "weights has shape": {"weights": a.weights[:, :5]},
        "rows summing to 1": {"weights": a.weights * 2},
        "rest_joints has shape": {"rest_joints": a.rest_joints[:5]},
        "rotations has shape": {"rotations": a.rotations[:, :5]},
        "root_positions has shape": {"root_positions": a.root_positions[:3]},
        "frames has shape": {"frames": a.frames[:3]},
        "strictly increasing": {"frames": a.frames[::-1].copy()},
        "not rotation matrices": {"rotations": a.rotations * 1.1},
        "parents must be": {"parents": np.r_[-1, a.parents[1:][::-1]]},
        "joint_names must be": {"joint_names": a.joint_names[:3]},
        "faces index vertices": {"faces": a.faces + len(a.vertices)},
        "faces has shape": {"faces": a.faces[:, :2]},
        "NaN": {"root_positions": np.full_like(a.root_positions, np.nan)},
        "fps must be": {"fps": 0},
        "at least one frame": {"rotations": a.rotations[:0], "root_positions": a.root_positions[:0],
                               "frames": a.frames[:0]},  # fmt: skip
        "go together": {"focal_length": [800.0, 800.0]},
    }
    for message, kw in cases.items():
        with pytest.raises(ValueError, match=message):
            make(**kw)
    with pytest.raises(ValueError, match="max_influences"):
        glb_bytes(a, max_influences=9)


@pytest.mark.parametrize("writer", [write_skinned_glb, write_bvh])
def test_failed_write_leaves_no_file(walks, tmp_path, monkeypatch, writer):
    a = walks["smpl"].animation
    target = tmp_path / ("x.glb" if writer is write_skinned_glb else "x.bvh")
    target.write_bytes(b"old")

    def broken(self, data):
        with open(self, "wb") as f:
            f.write(data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        writer(target, a)
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    writer(target, a)
    assert target.read_bytes()[:4] in (b"glTF", b"HIER")


# ----------------------------------------------------------------------------------------- validator
def validate(paths: list[Path]) -> list[dict]:
    _need(VALIDATOR, "the Khronos glTF validator", "node")
    out = subprocess.run(["node", str(ROOT / "tests/gltf_validate.js"), str(VALIDATOR), *map(str, paths)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_khronos_validator_reports_no_errors_or_warnings(walks, files, models, tmp_path):
    single = image_animation(_mesh_output(models["bundled"]), models["bundled"]).animation
    write_skinned_glb(tmp_path / "single.glb", single)
    four = tmp_path / "four.glb"
    write_skinned_glb(four, walks["bundled"].animation, max_influences=4)
    paths = [files["bundled"][0], files["smpl"][0], tmp_path / "single.glb", four]
    for path, report in zip(paths, validate(paths), strict=True):
        issues = report["issues"]
        listed = [(m["code"], m["severity"], m.get("pointer")) for m in issues["messages"]]
        print(path.name, "validator:", issues["numErrors"], "errors,", issues["numWarnings"], "warnings,",
              issues["numInfos"], "infos,", issues["numHints"], "hints", listed)  # fmt: skip
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, listed
        assert issues["numInfos"] == 0, listed
        info = report["info"]
        assert info["animationCount"] == 1 and info["hasSkins"] and info["maxInfluences"] <= 8


def test_validator_catches_a_broken_file(walks, tmp_path):
    """The validator check itself works: a file with a non-unit quaternion is an error."""
    data = bytearray(glb_bytes(walks["smpl"].animation))
    doc, _ = read_glb(bytes(data))
    sampler = doc["animations"][0]["samplers"][1]["output"]  # the root's rotations
    bin_start = 20 + int.from_bytes(data[12:16], "little") + 8
    offset = bin_start + doc["bufferViews"][doc["accessors"][sampler]["bufferView"]]["byteOffset"]
    data[offset : offset + 4] = np.float32(3.0).tobytes()
    (tmp_path / "bad.glb").write_bytes(bytes(data))
    report = validate([tmp_path / "bad.glb"])[0]
    assert report["issues"]["numErrors"] > 0


# ----------------------------------------------------------------------------------------- Blender
def blender_read(specs: list[dict], tmp_path: Path, render: dict | None = None) -> list[dict]:
    _need(BPY_PYTHON, "Blender's Python module (bpy)")
    (tmp_path / "in.json").write_text(json.dumps({"files": specs, "render": render}))
    out = subprocess.run([str(BPY_PYTHON), str(ROOT / "tests/blender_read.py"), str(tmp_path / "in.json"),
                          str(tmp_path / "out.json")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())["files"]


def blender_checks(animations: dict[str, Animation], paths: dict[str, tuple[Path, Path]], frames: dict[str, list[int]],
                   tmp_path: Path) -> dict[str, float]:  # fmt: skip
    """Import every .glb and .bvh in Blender; at the given video frames the joints Blender computes (mapped
    back to the camera frame) equal the rig's; returns the largest error (m) per file."""
    specs = []
    for name, (glb, bvh) in paths.items():
        a, f = animations[name], frames[name]
        specs.append({"path": str(glb), "kind": "glb", "fps": a.fps, "frames": f})  # glTF: frame = time * fps
        # BVH: row k (video frame frames[0] + k) is Blender frame frame_start + k.
        specs.append({"path": str(bvh), "kind": "bvh", "fps": a.fps, "bvh_scale": 0.01, "bvh_frame_start": 1,
                      "frames": [1 + x - int(a.frames[0]) for x in f]})  # fmt: skip
    results = blender_read(specs, tmp_path)
    errors = {}
    for k, (name, (glb, bvh)) in enumerate(paths.items()):
        a, f = animations[name], frames[name]
        ref = a.joint_positions(f)
        for res, path in ((results[2 * k], glb), (results[2 * k + 1], bvh)):
            assert res["bones"] and set(res["bones"]) == set(a.joint_names)
            got = np.stack([[res["joints"][key][n] for n in a.joint_names] for key in sorted(res["joints"], key=int)])
            got = got @ BLENDER_TO_CAMERA.T
            errors[path.name] = float(np.abs(got - ref).max())
            assert errors[path.name] < 1e-3, (path.name, errors[path.name])
            lo, hi = res["frame_range"]
            # The animation spans the track's frames (glTF: float32 seconds times fps, so to 1e-4 frames).
            assert hi - lo + 1 == pytest.approx(a.num_frames, abs=1e-4)
            if path.suffix == ".glb":
                assert lo == pytest.approx(a.frames[0], abs=1e-4)
                assert res["vertex_count"] == [len(a.vertices)]
                assert res["cameras"] == (["camera"] if a.has_camera else [])
            else:
                assert res["fps"] == pytest.approx(a.fps)  # the importer took the BVH's frame time
    print("Blender joint errors (mm):", {k: round(1000 * v, 4) for k, v in errors.items()})
    return errors


def test_blender_imports_glb_and_bvh_with_the_rigs_joints(walks, files, models, tmp_path):
    """First, middle, gap and last frames of the walks, both body models, and a single-image person: within
    1 mm (measured: ~1 micrometre)."""
    frames = [START, START + 7, GAP, START + NUM_FRAMES - 1]
    anims = {k: p.animation for k, p in walks.items()}
    paths, sample = dict(files), {k: frames for k in walks}
    anims["single"] = image_animation(_mesh_output(models["bundled"]), models["bundled"], CAMERA).animation
    paths["single"] = (tmp_path / "single.glb", tmp_path / "single.bvh")
    write_skinned_glb(paths["single"][0], anims["single"])
    write_bvh(paths["single"][1], anims["single"])
    sample["single"] = [0]
    blender_checks(anims, paths, sample, tmp_path)


# ----------------------------------------------------------------------------------------- real video
@pytest.mark.slow
def test_video_tracks_export_and_import(tmp_path):
    """tests/data/vtest_clip.mp4 (20 frames, 10 fps) through VideoSession: every track's rig reproduces the body
    model's joints of its shape; the files validate and Blender reads the same joints back."""
    from hmr.io.video import read_video
    from hmr.pipeline import Pipeline, PipelineConfig
    from hmr.pipeline.config import DetectorSection
    from hmr.pipeline.video import VideoSession
    from tests.test_demo import FAST_FIT

    p = Pipeline(PipelineConfig(fitting=FAST_FIT, detector=DetectorSection(tiles=False)))
    frames, fps = read_video(CLIP)
    session = VideoSession(p, fps)
    for image in frames:  # 20 frames, ~0.2 s each
        session.step(image)
    people = video_animations(session.rows, p.body_model, fps, camera=session.last.camera)
    assert session.frames == 20 and any(pa.animation.num_frames == 20 for pa in people.values())
    paths, anims, sample = {}, {}, {}
    for tid, pa in people.items():
        a = pa.animation
        assert a.fps == fps and len(a.vertices) == p.body_model.num_vertices
        rows = [r for r in session.rows if r["track_id"] == tid and r["smoothed"] is not None]
        # one shape per track: the mean of its raw shapes so far
        raw_betas = np.stack([r["raw"]["betas"] for r in rows])
        expected = np.cumsum(raw_betas, 0) / np.arange(1, len(rows) + 1)[:, None]
        np.testing.assert_allclose(np.stack([r["smoothed"]["betas"] for r in rows]), expected, atol=1e-5)
        rot = torch.from_numpy(np.stack([r["smoothed"]["rotmats"] for r in rows]))
        betas = torch.from_numpy(pa.betas).float().expand(len(rot), -1)
        with torch.no_grad():
            ref = p.body_model.posed_joints(rot, betas).numpy()
        ref += (np.stack([r["smoothed"]["joints"][0] for r in rows]) - ref[:, 0])[:, None]
        np.testing.assert_allclose(a.joint_positions(), ref, atol=1e-5)
        shape_change = np.abs(pa.joints - pa.frame_joints).max()
        print(f"track {tid}: {len(a.frames)} keys, frames {a.frames[0]}..{a.frames[-1]}; one shape moves the "
              f"joints by up to {1000 * shape_change:.2f} mm from the per-frame fits")  # fmt: skip
        paths[tid] = (tmp_path / f"track{tid}.glb", tmp_path / f"track{tid}.bvh")
        write_skinned_glb(paths[tid][0], a)
        write_bvh(paths[tid][1], a)
        anims[tid] = a
        f = a.frames
        sample[tid] = sorted({int(f[0]), int(f[len(f) // 2]), int(f[-1])})
    for report in validate([g for g, _ in paths.values()]):
        assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0
    blender_checks(anims, paths, sample, tmp_path)

