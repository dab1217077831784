"""Import an exported .glb or .bvh with Blender's own importers and report what Blender sees (run with the
bpy venv's python: ``.venv-bpy/bin/python tests/blender_read.py IN.json OUT.json``; it cannot import hmr).

IN.json: ``{"files": [{"path", "kind": "glb"|"bvh", "fps", "frames": [Blender frames to read],
"bvh_scale", "bvh_frame_start"}], "render": optional {"path", "frames", "size", "glb"}}``.
OUT.json: per file ``{"joints": {frame: {bone: [x, y, z]}}, "vertex_count", "frame_range", "bones",
"fps"}``, joint positions in Blender's world frame (z up), metres.
"""

from __future__ import annotations

import json
import math
import sys

import bpy
from mathutils import Vector


def _fresh() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _read(spec: dict) -> dict:
    _fresh()
    scene = bpy.context.scene
    # glTF keys are in seconds; the importer turns them into frames at the scene's rate (set it first).
    scene.render.fps, scene.render.fps_base = int(round(spec["fps"])), 1.0
    if spec["kind"] == "glb":
        bpy.ops.import_scene.gltf(filepath=spec["path"])
    else:
        bpy.ops.import_anim.bvh(filepath=spec["path"], global_scale=spec.get("bvh_scale", 0.01),
                                frame_start=spec.get("bvh_frame_start", 1), update_scene_fps=True,
                                update_scene_duration=True, axis_forward="-Z", axis_up="Y")  # fmt: skip
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    # Only the skinned meshes: the glTF importer also adds an icosphere as the bones' display shape.
    meshes = [o for o in scene.objects if o.type == "MESH" and any(m.type == "ARMATURE" for m in o.modifiers)]
    action = arm.animation_data.action if arm.animation_data else None
    out = {
        "bones": [b.name for b in arm.pose.bones],
        "vertex_count": [len(o.data.vertices) for o in meshes],
        "frame_range": list(action.frame_range) if action else None,
        "fps": scene.render.fps / scene.render.fps_base,
        "cameras": [o.name for o in scene.objects if o.type == "CAMERA"],
        "joints": {},
    }
    for frame in spec["frames"]:
        scene.frame_set(int(frame))
        bpy.context.view_layer.update()
        out["joints"][str(frame)] = {pb.name: list(arm.matrix_world @ pb.head) for pb in arm.pose.bones}
    return out


def _render(spec: dict) -> None:
    """Several frames of one .glb overlaid in one picture from a 3/4 view (Cycles on the CPU, headless).

    spec: ``glb``, ``path`` (PNG), ``fps``, ``frames``, optional ``size`` (W, H), ``color`` (RGB), ``view``
    (direction from the people to the viewer, Blender frame), ``distance`` (in scene sizes), ``samples``.
    """
    _fresh()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(round(spec["fps"])), 1.0
    frames = spec["frames"]
    points = []
    for i, frame in enumerate(frames):
        before = set(bpy.data.objects)
        bpy.ops.import_scene.gltf(filepath=spec["glb"])
        new = [o for o in bpy.data.objects if o not in before]
        scene.frame_set(int(frame))
        for o in new:
            if o.type == "MESH" and any(m.type == "ARMATURE" for m in o.modifiers):
                # Freeze this copy at its frame: the armature deformation applied into a static mesh.
                mesh = bpy.data.meshes.new_from_object(o.evaluated_get(bpy.context.evaluated_depsgraph_get()))
                static = bpy.data.objects.new(f"frame{frame}", mesh)
                static.matrix_world = o.matrix_world
                scene.collection.objects.link(static)
                shade = 0.75 + 0.25 * i / max(len(frames) - 1, 1)  # later frames brighter
                _material(static, [c * shade for c in spec.get("color", (0.65, 0.74, 0.86))])
                points += [static.matrix_world @ v.co for v in list(mesh.vertices)[::50]]
    # Keep only the frozen copies (the importer's armatures, skinned meshes and its bone-shape icosphere go).
    for o in list(bpy.data.objects):
        if not o.name.startswith("frame"):
            bpy.data.objects.remove(o, do_unlink=True)
    lo = Vector([min(p[k] for p in points) for k in range(3)])
    hi = Vector([max(p[k] for p in points) for k in range(3)])
    centre, size = (lo + hi) / 2, max((hi - lo).length, 1.0)
    cam = bpy.data.objects.new("view", bpy.data.cameras.new("view"))
    cam.data.lens = 45
    scene.collection.objects.link(cam)
    # Default: from the filming camera's side (Blender -y = the file's +z, towards it), left and above.
    cam.location = centre + Vector(spec.get("view", (-0.7, -1.0, 0.4))).normalized() * size * spec.get("distance", 1.5)
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    r = 0.8 * size
    floor = bpy.data.meshes.new("floor")
    floor.from_pydata([(centre.x + dx * r, centre.y + dy * r, lo.z) for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))],
                      [], [(0, 1, 2, 3)])  # fmt: skip
    scene.collection.objects.link(fo := bpy.data.objects.new("floor", floor))
    _material(fo, (1.0, 1.0, 0.97))
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy, sun.data.angle = 2.5, 0.1
    sun.rotation_euler = (0.6, 0.0, -0.8)
    scene.collection.objects.link(sun)
    scene.world = bpy.data.worlds.new("background")
    scene.world.use_nodes = True
    scene.world.node_tree.nodes["Background"].inputs["Color"].default_value = (1, 1, 1, 1)
    scene.world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.35
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", spec.get("samples", 16), True
    scene.view_settings.view_transform = "Standard"  # AgX would wash the colours out
    scene.render.resolution_x, scene.render.resolution_y = spec.get("size", (960, 540))
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = spec["path"]
    bpy.ops.render.render(write_still=True)


def _material(obj, rgb) -> None:
    mat = bpy.data.materials.new(obj.name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*rgb, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    obj.data.materials.clear()
    obj.data.materials.append(mat)


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    out = {"files": [_read(f) for f in spec.get("files", [])], "blender": bpy.app.version_string}
    if spec.get("render"):
        _render(spec["render"])
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, allow_nan=False, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)


if __name__ == "__main__":
    main()
