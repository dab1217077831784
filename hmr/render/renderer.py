"""Mesh rendering over images with the toolkit's pinhole camera (OpenGL through EGL, see context.py).

Conventions (docs/conventions.md): vertices in the camera frame, metres, OpenCV axes (x right, y down,
z forward), already translated by ``cam_t``; images RGB uint8 (H, W, 3). Usage: docs/rendering.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from hmr.geometry import Camera
from hmr.render.context import gl_context
from hmr.render.views import orbit, orbit_rotation

# Per-person colours (sRGB in [0, 1]): light, distinct hues that stay readable when shaded.
DEFAULT_PALETTE = (
    (0.65, 0.74, 0.86),
    (0.93, 0.60, 0.47),
    (0.60, 0.82, 0.58),
    (0.95, 0.80, 0.45),
    (0.75, 0.63, 0.88),
    (0.50, 0.80, 0.82),
    (0.92, 0.62, 0.75),
    (0.80, 0.78, 0.70),
)

_SHADER_HEADER = "#version 330\n"
_VERTEX_SHADER = """
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
#ifdef TEXTURED
in vec2 in_attr;
out vec2 v_attr;
#else
in vec3 in_attr;
out vec3 v_attr;
#endif
out vec3 v_pos;
out vec3 v_normal;
void main() {
    v_pos = in_pos;
    v_normal = in_normal;
    v_attr = in_attr;
    gl_Position = u_proj * vec4(in_pos, 1.0);
}
"""
# Lights live in the camera frame (y down, z forward): a key light from the upper left in front, a weak
# fill from the right and a sky/ground hemisphere, lit in linear RGB so shading gradients read as shape.
_FRAGMENT_SHADER = """
uniform bool u_shading;
uniform float u_id;
#ifdef TEXTURED
uniform sampler2D u_texture;
in vec2 v_attr;
#else
in vec3 v_attr;
#endif
in vec3 v_pos;
in vec3 v_normal;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_depth_id;

const vec3 KEY_DIR = normalize(vec3(-0.45, -0.6, -0.65));
const vec3 KEY_RGB = vec3(0.85, 0.83, 0.80);
const vec3 FILL_DIR = normalize(vec3(0.8, -0.1, -0.45));
const vec3 FILL_RGB = vec3(0.25, 0.27, 0.30);
const vec3 SKY = vec3(0.30, 0.31, 0.33);
const vec3 GROUND = vec3(0.10, 0.09, 0.08);

void main() {
#ifdef TEXTURED
    vec3 albedo = texture(u_texture, v_attr).rgb;
#else
    vec3 albedo = v_attr;
#endif
    vec3 color = albedo;
    if (u_shading) {
        vec3 view = normalize(-v_pos);
        // The facet's own normal, turned to the viewer, tells which side of the surface is seen
        // whatever the winding; the smooth normal is flipped to that side.
        vec3 facet = cross(dFdx(v_pos), dFdy(v_pos));
        if (dot(facet, view) < 0.0) facet = -facet;
        vec3 n = normalize(v_normal);
        if (dot(n, facet) < 0.0) n = -n;
        vec3 light = mix(GROUND, SKY, 0.5 - 0.5 * n.y);
        float key = max(dot(n, KEY_DIR), 0.0);
        light += KEY_RGB * key + FILL_RGB * max(dot(n, FILL_DIR), 0.0);
        float spec = key > 0.0 ? pow(max(dot(n, normalize(KEY_DIR + view)), 0.0), 40.0) : 0.0;
        color = pow(pow(albedo, vec3(2.2)) * light + 0.12 * spec, vec3(1.0 / 2.2));
    }
    f_color = vec4(color, 1.0);
    f_depth_id = vec2(v_pos.z, u_id);
}
"""


@dataclass
class RenderOutput:
    """image: (H, W, 3) uint8 RGB. mask: (H, W) int32 instance ids, 0 = background, i + 1 = mesh i.
    depth: (H, W) float32 camera-frame z in metres of the nearest surface, 0 = background.

    ``mask`` and ``depth`` are sampled at pixel centres (not antialiased); None when not requested.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    depth: np.ndarray | None = None


@dataclass
class _Mesh:
    """One mesh ready for the GPU: (N, 3) positions and normals, (N, 3) colours or (N, 2) UVs, (M, 3)
    triangle indices (None: consecutive triples), optional (h, w, 3) uint8 texture. Closed surfaces get
    back-face culling, which saves about a third of llvmpipe's time for a body."""

    pos: np.ndarray
    normal: np.ndarray
    attr: np.ndarray
    index: np.ndarray | None
    texture: np.ndarray | None = None
    front_face: str | None = None  # GL winding ("cw"/"ccw") of the faces turned to the camera; None: no culling


class Renderer:
    """Renders triangle meshes at a fixed image size; reuse one instance across the frames of a video.

    ``samples``: MSAA samples per pixel for the colour image (1 disables antialiasing; capped at what the
    device supports, 4 on llvmpipe; the value used is ``self.samples``). ``device_index``:
    the EGL device (None: the default, i.e. llvmpipe on a machine without GPU). A Renderer may only be
    used from the thread that created it (the OpenGL context is current there); create one per thread,
    and in worker processes create it after the fork. Release its GPU objects with ``close()`` or
    ``with Renderer(...) as r:``.
    """

    def __init__(self, width: int, height: int, samples: int = 4, device_index: int | None = None):
        if width < 1 or height < 1:
            raise ValueError(f"Renderer image size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self._thread = threading.get_ident()
        self._closed = _ClosedSurfaces()
        self._ctx = ctx = gl_context(device_index)
        with ctx:
            self.samples = max(1, min(int(samples), ctx.max_samples))
            size = (self.width, self.height)
            self._programs = {
                textured: ctx.program(
                    vertex_shader=_SHADER_HEADER + ("#define TEXTURED\n" if textured else "") + _VERTEX_SHADER,
                    fragment_shader=_SHADER_HEADER + ("#define TEXTURED\n" if textured else "") + _FRAGMENT_SHADER,
                )
                for textured in (False, True)
            }
            # Single-sample pass: colour + (depth, id) at pixel centres. MSAA pass: colour only.
            self._maps_fbo = ctx.framebuffer(
                [ctx.renderbuffer(size, 4), ctx.renderbuffer(size, 2, dtype="f4")], ctx.depth_renderbuffer(size)
            )
            self._msaa_fbo = self._resolve_fbo = None
            if self.samples > 1:
                self._msaa_fbo = ctx.framebuffer(
                    [ctx.renderbuffer(size, 4, samples=self.samples)],
                    ctx.depth_renderbuffer(size, samples=self.samples),
                )
                self._resolve_fbo = ctx.framebuffer([ctx.renderbuffer(size, 4)])

    @property
    def device_name(self) -> str:
        """The OpenGL renderer and version, e.g. 'llvmpipe (LLVM 15.0.6, 256 bits), OpenGL 4.5 ... Mesa 22.3.6'."""
        with self._ctx:
            info = self._ctx.info
        return f"{info['GL_RENDERER']}, OpenGL {info['GL_VERSION']}"

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release this renderer's GPU objects (the shared context stays for the thread's other renderers)."""
        with self._ctx:
            for fbo in (self._maps_fbo, self._msaa_fbo, self._resolve_fbo):
                if fbo is not None:
                    for att in (*fbo.color_attachments, fbo.depth_attachment):
                        if att is not None:
                            att.release()
                    fbo.release()
            for prog in self._programs.values():
                prog.release()
        self._maps_fbo = self._msaa_fbo = self._resolve_fbo = None
        self._programs = {}

    # ----------------------------------------------------------------------------------------- public API
    def render(self, vertices, faces, camera: Camera | None = None, *, colors=None, textures=None, uvs=None,
               background=None, opacity: float = 1.0, shading: bool = True, maps: bool = True) -> RenderOutput:  # fmt: skip
        """Render meshes over ``background``; returns the image and (``maps=True``) instance mask and depth.

        vertices: (V, 3), (N, V, 3) or a list of (V_i, 3) arrays/tensors. faces: (F, 3) shared by all
        meshes or a list of (F_i, 3). camera: intrinsics for this image size (None: ``Camera.full_image``).
        colors: None (``DEFAULT_PALETTE`` by mesh index), one RGB for all, or per mesh an RGB or (V_i, 3)
        per-vertex colours; floats in [0, 1] or integers in [0, 255].
        textures: an (h, w, 3) uint8 image for all meshes or a list per mesh (None entries use colours),
        with ``uvs`` (V, 2) per vertex or (F, 3, 2) per face corner, shared or per mesh; u to the right,
        v up (OBJ/SMPL convention, v = 0 is the texture's bottom row).
        background: (H, W, 3) uint8 image, an RGB colour, or None (black). opacity: mesh opacity in [0, 1].
        shading: False renders the plain colours/texture (e.g. label maps).
        """
        self._check_thread()
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {opacity}")
        fx, fy, cx, cy = self._intrinsics(camera)
        verts, faces = _as_meshes(vertices, faces)
        meshes = _prepare(verts, faces, colors, textures, uvs, self._closed)
        canvas = self._background(background)
        box = _screen_box(verts, (fx, fy, cx, cy), self.width, self.height)
        mask = depth = None
        if maps:
            mask = np.zeros((self.height, self.width), np.int32)
            depth = np.zeros((self.height, self.width), np.float32)
        if box is None:
            return RenderOutput(canvas, mask, depth)
        x0, y0, x1, y1 = box
        region = (x0, y0, x1 - x0, y1 - y0)
        proj = _projection(fx, fy, cx, cy, self.width, self.height, *_depth_range(verts))
        with self._ctx:
            if maps or self._msaa_fbo is None:
                self._draw(self._maps_fbo, meshes, proj, region, shading)
                if maps:
                    zid = np.frombuffer(self._maps_fbo.read(region, 2, attachment=1, dtype="f4"), np.float32)
                    zid = zid.reshape(y1 - y0, x1 - x0, 2)
                    depth[y0:y1, x0:x1] = zid[..., 0]
                    mask[y0:y1, x0:x1] = np.rint(zid[..., 1])
            color_fbo = self._maps_fbo
            if self._msaa_fbo is not None:
                self._draw(self._msaa_fbo, meshes, proj, region, shading)
                # Resolve only the scissored region (blits honour the scissor test).
                self._msaa_fbo.scissor = self._resolve_fbo.scissor = region
                self._ctx.copy_framebuffer(self._resolve_fbo, self._msaa_fbo)
                self._msaa_fbo.scissor = self._resolve_fbo.scissor = None
                color_fbo = self._resolve_fbo
            rgba = np.frombuffer(color_fbo.read(region, 4), np.uint8).reshape(y1 - y0, x1 - x0, 4)
        canvas[y0:y1, x0:x1] = _composite(rgba, canvas[y0:y1, x0:x1], opacity)
        return RenderOutput(canvas, mask, depth)

    def overlay(self, image: np.ndarray, vertices, faces, camera: Camera | None = None, *, colors=None,
                opacity: float = 1.0) -> np.ndarray:  # fmt: skip
        """Shaded meshes over an RGB uint8 ``image`` (H, W, 3); arguments as in ``render``."""
        return self.render(vertices, faces, camera, colors=colors, background=image, opacity=opacity, maps=False).image

    def view(self, vertices, faces, camera: Camera | None = None, *, yaw: float = 0.0, pitch: float = 0.0,
             center=None, colors=None, background=(255, 255, 255)) -> np.ndarray:  # fmt: skip
        """The scene turned by ``yaw`` then ``pitch`` degrees (``hmr.render.views.orbit_rotation``) about
        ``center`` and framed so that every mesh is in view, on a plain ``background``.

        center: points whose mean is the pivot, e.g. the people's joints (N, J, 3); None: all vertices.
        Colours follow mesh order as in ``render``, so people keep their colour across views.
        """
        self._check_thread()
        fx, fy, cx, cy = self._intrinsics(camera)
        verts, faces = _as_meshes(vertices, faces)
        nonempty = [v for v in verts if len(v)]
        if center is not None:
            pivot = _to_numpy(center).reshape(-1, 3).mean(0)
        elif nonempty:
            pivot = np.concatenate(nonempty).mean(0)
        else:
            pivot = np.zeros(3)
        moved = orbit(verts, orbit_rotation(yaw, pitch), pivot, np.array([fx, fy]), np.array([cx, cy]),
                      (self.width, self.height))  # fmt: skip
        return self.render(moved, faces, camera, colors=colors, background=background, maps=False).image

    def side_view(self, vertices, faces, camera: Camera | None = None, **kwargs) -> np.ndarray:
        """``view(yaw=90)``: people who face the camera are seen from their left."""
        return self.view(vertices, faces, camera, yaw=90.0, **kwargs)

    def top_view(self, vertices, faces, camera: Camera | None = None, **kwargs) -> np.ndarray:
        """``view(pitch=90)``: the scene seen from above, the camera's side at the image bottom."""
        return self.view(vertices, faces, camera, pitch=90.0, **kwargs)

    # ------------------------------------------------------------------------------------------- internals
    def _check_thread(self) -> None:
        if self._programs == {}:
            raise RuntimeError("this Renderer was closed; create a new one")
        if threading.get_ident() != self._thread:
            raise RuntimeError("a Renderer can only be used from the thread that created it; create one per thread")

    def _intrinsics(self, camera: Camera | None) -> tuple[float, float, float, float]:
        if camera is None:
            camera = Camera.full_image(self.width, self.height)
        f, c, size = (
            t.detach().cpu().double() for t in (camera.focal_length, camera.principal_point, camera.image_size)
        )
        if len(f) > 1 and not (bool((f == f[0]).all()) and bool((c == c[0]).all())):
            raise ValueError("render one image at a time: the camera has several different intrinsics (batch > 1)")
        w, h = size[0].tolist()
        if (round(w), round(h)) != (self.width, self.height):
            raise ValueError(f"camera image size {w:g}x{h:g} does not match the Renderer's {self.width}x{self.height}; "
                             "create a Renderer for that size")  # fmt: skip
        return (*f[0].tolist(), *c[0].tolist())

    def _background(self, background) -> np.ndarray:
        shape = (self.height, self.width, 3)
        if background is None:
            return np.zeros(shape, np.uint8)
        bg = np.asarray(background)
        if bg.shape == (3,):
            return np.broadcast_to(_rgb01(bg) * 255 + 0.5, shape).astype(np.uint8)
        if bg.shape != shape or bg.dtype != np.uint8:
            raise ValueError(f"background/image must be an RGB uint8 array of shape {shape} (or an RGB colour), "
                             f"got {bg.dtype} {bg.shape}")  # fmt: skip
        return bg.copy()

    def _draw(self, fbo, meshes: list[_Mesh], proj: np.ndarray, region, shading: bool) -> None:
        import moderngl

        ctx = self._ctx
        fbo.use()
        fbo.viewport = (0, 0, self.width, self.height)
        fbo.scissor = region
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=region)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        for i, mesh in enumerate(meshes):
            if len(mesh.pos) == 0 or (mesh.index is not None and len(mesh.index) == 0):
                continue
            if mesh.front_face is None:
                ctx.disable(moderngl.CULL_FACE)
            else:
                ctx.front_face = mesh.front_face
                ctx.enable(moderngl.CULL_FACE)
            textured = mesh.texture is not None
            prog = self._programs[textured]
            prog["u_proj"].write(proj.T.astype(np.float32).tobytes())
            prog["u_id"].value = float(i + 1)
            prog["u_shading"].value = shading
            objects = [ctx.buffer(mesh.pos), ctx.buffer(mesh.normal), ctx.buffer(mesh.attr)]
            index = None if mesh.index is None else ctx.buffer(mesh.index)
            attr = "2f" if textured else "3f"
            vao = ctx.vertex_array(prog, [(objects[0], "3f", "in_pos"), (objects[1], "3f", "in_normal"),
                                          (objects[2], attr, "in_attr")], index)  # fmt: skip
            objects += [vao] + ([index] if index is not None else [])
            if textured:
                tex = ctx.texture(mesh.texture.shape[1::-1], 3, np.ascontiguousarray(mesh.texture[::-1]))
                tex.build_mipmaps()
                tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
                tex.use(0)
                prog["u_texture"].value = 0
                objects.append(tex)
            vao.render(moderngl.TRIANGLES)
            for obj in objects:
                obj.release()
        fbo.scissor = None


# ----------------------------------------------------------------------------------------------- helpers
def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _rgb01(c) -> np.ndarray:
    """Colours as float32 in [0, 1]: floats are taken as [0, 1], integers as [0, 255]."""
    c = _to_numpy(c)
    return (c.astype(np.float32) / 255) if np.issubdtype(c.dtype, np.integer) else np.clip(c.astype(np.float32), 0, 1)


def _as_meshes(vertices, faces) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalise the accepted vertex/face layouts to per-mesh float32 (V, 3) and int32 (F, 3) arrays."""
    if isinstance(vertices, (list, tuple)):
        verts = [_to_numpy(v) for v in vertices]
    else:
        v = _to_numpy(vertices)
        verts = [v] if v.ndim == 2 else list(v)
    if isinstance(faces, (list, tuple)):
        fcs = [_to_numpy(f) for f in faces]
        if len(fcs) != len(verts):
            raise ValueError(
                f"got {len(fcs)} face arrays for {len(verts)} meshes; pass one per mesh or one shared (F, 3)"
            )
    else:
        fcs = [_to_numpy(faces)] * len(verts)
    for i, (v, f) in enumerate(zip(verts, fcs, strict=True)):
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"mesh {i}: vertices must be (V, 3), got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"mesh {i}: vertices contain NaN or infinite values; drop that mesh before rendering")
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"mesh {i}: faces must be an integer (F, 3) array, got {f.dtype} {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(f"mesh {i}: face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    return ([np.ascontiguousarray(v, np.float32) for v in verts],
            [np.ascontiguousarray(f, np.int32) for f in fcs])  # fmt: skip


def _per_mesh(value, n: int, name: str) -> list:
    """A list with one entry per mesh: ``value`` itself when it is a list/tuple, else ``value`` for all."""
    if not isinstance(value, (list, tuple)):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{name}: expected one entry per mesh ({n}), got {len(value)}")
    return list(value)


def _mesh_colors(colors, verts: list[np.ndarray]) -> list[np.ndarray]:
    """Per mesh an RGB (3,) or per-vertex (V_i, 3) float32 colour in [0, 1]."""
    n = len(verts)
    if colors is None:
        return [np.asarray(DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)], np.float32) for i in range(n)]
    if isinstance(colors, (list, tuple)) and len(colors) == n and not (n == 3 and np.ndim(colors[0]) == 0):
        entries = list(colors)
    else:
        arr = _to_numpy(colors)
        if arr.shape == (3,):
            entries = [arr] * n
        elif arr.ndim >= 2 and len(arr) == n:
            entries = list(arr)
        elif n == 1 and arr.shape == (len(verts[0]), 3):
            entries = [arr]
        else:
            raise ValueError(f"colors must be one RGB, one per mesh ({n}) or per-vertex (V, 3) per mesh, "
                             f"got shape {arr.shape}")  # fmt: skip
    out = []
    for i, (c, v) in enumerate(zip(entries, verts, strict=True)):
        c = _rgb01(c)
        if c.shape != (3,) and c.shape != (len(v), 3):
            raise ValueError(f"colors for mesh {i} must be an RGB (3,) or per-vertex ({len(v)}, 3), got {c.shape}")
        out.append(c)
    return out


def _prepare(verts, faces, colors, textures, uvs, closed: _ClosedSurfaces) -> list[_Mesh]:
    n = len(verts)
    cols = _mesh_colors(colors, verts)
    texs, uvl = _per_mesh(textures, n, "textures"), _per_mesh(uvs, n, "uvs")
    meshes = []
    for i, (v, f, c, tex, uv) in enumerate(zip(verts, faces, cols, texs, uvl, strict=True)):
        fn = _face_normals(v, f)
        normal = _accumulate_normals(fn, f, len(v))
        front = None
        if closed(f):
            # Outward winding (positive volume) is counter-clockwise seen from outside; as image rows map to
            # window rows unflipped (see _projection), GL sees those triangles clockwise.
            outward = np.einsum("ij,ij->", v[f[:, 0]].astype(np.float64), fn) > 0
            front = "cw" if outward else "ccw"
        if tex is None:
            attr = np.ascontiguousarray(np.broadcast_to(c, v.shape), np.float32)
            meshes.append(_Mesh(v, normal, attr, f, front_face=front))
            continue
        tex = _to_numpy(tex)
        if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8:
            raise ValueError(f"texture for mesh {i} must be an (h, w, 3) uint8 image, got {tex.dtype} {tex.shape}")
        if uv is None:
            raise ValueError(f"mesh {i} has a texture but no uvs; pass uvs=(V, 2) or (F, 3, 2)")
        uv = _to_numpy(uv).astype(np.float32)
        if uv.shape == (len(v), 2):
            meshes.append(_Mesh(v, normal, np.ascontiguousarray(uv), f, tex, front))
        elif uv.shape == (len(f), 3, 2):
            # Per-corner UVs (texture seams): draw unindexed corners.
            meshes.append(_Mesh(np.ascontiguousarray(v[f].reshape(-1, 3)), np.ascontiguousarray(normal[f].reshape(-1, 3)),
                                np.ascontiguousarray(uv.reshape(-1, 2)), None, tex, front))  # fmt: skip
        else:
            raise ValueError(f"uvs for mesh {i} must be ({len(v)}, 2) or ({len(f)}, 3, 2), got {uv.shape}")
    return meshes


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit vertex normals, the area-weighted mean of the adjacent face normals (float32)."""
    v = np.asarray(vertices, np.float32)
    return _accumulate_normals(_face_normals(v, faces), faces, len(v))


def _face_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) face normals scaled by twice the face area (right-handed winding)."""
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    e1, e2 = b - a, c - a
    return np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
                     e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                     e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], axis=1)  # fmt: skip


def _accumulate_normals(face_normals: np.ndarray, faces: np.ndarray, num_vertices: int) -> np.ndarray:
    idx = faces.ravel()
    n = np.zeros((num_vertices, 3))
    for k in range(3):
        n[:, k] = np.bincount(idx, np.repeat(face_normals[:, k], 3), num_vertices)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n.astype(np.float32)


class _ClosedSurfaces:
    """Remembers which face arrays are closed, consistently oriented surfaces (each edge used once in each
    direction), whose back faces can never be seen. Checking costs a few ms, so the answer is kept for
    the last few face arrays (looked up by content: a video reuses one topology)."""

    def __init__(self, size: int = 8):
        self._size, self._entries = size, []

    def __call__(self, faces: np.ndarray) -> bool:
        for cached, closed in self._entries:
            if cached.shape == faces.shape and np.array_equal(cached, faces):
                return closed
        closed = False
        if len(faces):
            f = faces.astype(np.int64)
            nxt = np.roll(f, -1, axis=1)
            base = int(f.max()) + 1
            edges, reverse = np.sort((f * base + nxt).ravel()), np.sort((nxt * base + f).ravel())
            closed = bool((np.diff(edges) > 0).all() and np.array_equal(edges, reverse))
        self._entries = [(faces.copy(), closed), *self._entries[: self._size - 1]]
        return closed


def _depth_range(verts: list[np.ndarray]) -> tuple[float, float]:
    """Near/far planes hugging the scene, so the 24-bit depth buffer resolves sub-millimetre gaps."""
    z = np.concatenate([v[:, 2] for v in verts])
    z = z[z > 1e-3]
    if len(z) == 0:
        return 0.01, 1.0
    near = max(float(z.min()) * 0.9, 0.01)
    return near, max(float(z.max()) * 1.1, near * 2)


def _projection(fx, fy, cx, cy, width, height, near, far) -> np.ndarray:
    """OpenCV intrinsics -> GL clip matrix. Image row v maps to window row v (no flip), so the framebuffer
    reads out top row first."""
    return np.array([
        [2 * fx / width, 0, 2 * cx / width - 1, 0],
        [0, 2 * fy / height, 2 * cy / height - 1, 0],
        [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, 1, 0],
    ])  # fmt: skip


def _screen_box(verts, intrinsics, width, height) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1) holding every projected vertex (the whole image when a mesh crosses the
    camera plane); None when nothing can be visible. Limits clearing, drawing and reading to it."""
    nonempty = [v for v in verts if len(v)]
    if not nonempty:
        return None
    p = np.concatenate(nonempty).astype(np.float64)
    if (p[:, 2] <= 0.01).any():
        return (0, 0, width, height) if (p[:, 2] > 0.01).any() else None
    fx, fy, cx, cy = intrinsics
    u, v = fx * p[:, 0] / p[:, 2] + cx, fy * p[:, 1] / p[:, 2] + cy
    x0, y0 = max(int(np.floor(u.min())) - 1, 0), max(int(np.floor(v.min())) - 1, 0)
    x1, y1 = min(int(np.ceil(u.max())) + 1, width), min(int(np.ceil(v.max())) + 1, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _composite(rgba: np.ndarray, under: np.ndarray, opacity: float) -> np.ndarray:
    """Premultiplied render (black, transparent clear; MSAA-resolved edges) over ``under``."""
    a = rgba[..., 3:4].astype(np.float32) * (opacity / 255)
    out = rgba[..., :3].astype(np.float32) * opacity + under.astype(np.float32) * (1 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


_THREAD_RENDERERS = threading.local()


def thread_renderer(width: int, height: int) -> Renderer:
    """This thread's :class:`Renderer` for images of this size, made on first use and kept: servers and
    pipelines call it from any thread without minding that a Renderer is bound to the thread that made it."""
    cache = _THREAD_RENDERERS.__dict__.setdefault("renderers", {})
    if (width, height) not in cache:
        cache[(width, height)] = Renderer(width, height)
    return cache[(width, height)]
