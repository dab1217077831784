"""Pixel checks of hmr.render against analytic projections (needs an EGL context: Mesa llvmpipe works)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull

from hmr.geometry import Camera
from hmr.render import Renderer, RenderUnavailableError, gl_context, orbit, orbit_rotation, vertex_normals

W, H = 160, 120


@pytest.fixture(scope="module")
def cam() -> Camera:
    # fx != fy and an off-centre principal point so that any mix-up of the intrinsics shows.
    return Camera(torch.tensor([[150.0, 140.0]]), torch.tensor([[83.0, 57.0]]), torch.tensor([[W, H]]))


def _renderer(samples: int):
    try:
        r = Renderer(W, H, samples=samples)
    except RenderUnavailableError as e:
        pytest.skip(f"no OpenGL context: {e}")
    yield r
    r.close()


@pytest.fixture(scope="module")
def renderer():
    yield from _renderer(1)


@pytest.fixture(scope="module")
def renderer_aa():
    yield from _renderer(4)


def box(center, size, rotation=None) -> tuple[np.ndarray, np.ndarray]:
    """Closed box, outward-facing triangles."""
    rotation = np.eye(3) if rotation is None else rotation
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64) / 2
    faces = ConvexHull(corners).simplices
    # orient outwards
    centroid = corners[faces].mean(1)
    normal = np.cross(corners[faces[:, 1]] - corners[faces[:, 0]], corners[faces[:, 2]] - corners[faces[:, 0]])
    flip = (normal * centroid).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    return (corners * size) @ rotation.T + center, faces


def project(cam: Camera, points: np.ndarray) -> np.ndarray:
    return cam.project(torch.tensor(points[None], dtype=torch.float64))[0].numpy()


def convex_fill(points2d: np.ndarray, height=H, width=W) -> np.ndarray:
    """Pixels whose centre lies inside the convex hull of ``points2d``."""
    hull = points2d[ConvexHull(points2d).vertices]  # counter-clockwise in (x, y)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    inside = np.ones((height, width), bool)
    for a, b in zip(hull, np.roll(hull, -1, 0), strict=True):
        inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= 0
    return inside


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def rot(axis_angle) -> np.ndarray:
    from hmr.geometry import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.tensor([axis_angle], dtype=torch.float64))[0].numpy()


def test_box_covers_its_analytic_projection(renderer, cam):
    v, f = box([0.1, -0.05, 2.0], [0.5, 0.3, 0.4], rot([0.3, 0.5, 0.2]))
    out = renderer.render(v, f, cam)
    expected = convex_fill(project(cam, v))
    assert iou(out.mask == 1, expected) > 0.985
    # Disagreement only along the outline (pixel centres within a pixel of an edge).
    outline = ndimage.binary_dilation(expected) & ~ndimage.binary_erosion(expected)
    assert not ((out.mask == 1) != expected)[~outline].any()


def test_large_triangle_and_partly_outside(renderer, cam):
    v = np.array([[-2.0, -1.5, 3.0], [1.0, -0.2, 3.5], [-0.3, 1.2, 2.5]])
    out = renderer.render(v, np.array([[0, 1, 2]]), cam)
    assert iou(out.mask == 1, convex_fill(project(cam, v))) > 0.99


def test_depth_is_metric_z(renderer, cam):
    # A tilted plane n . X = d: depth at a pixel is d / (n . ray) with ray = ((u - cx) / fx, (v - cy) / fy, 1).
    v, f = np.array([[-5, -5, 0], [5, -5, 0], [5, 5, 0], [-5, 5, 0]], float), np.array([[0, 1, 2], [0, 2, 3]])
    r = rot([0.4, -0.3, 0.0])
    v = v @ r.T + [0, 0, 4.0]
    n = r @ [0, 0, 1.0]
    d = n @ [0, 0, 4.0]
    out = renderer.render(v, f, cam)
    (fx, fy), (cx, cy) = cam.focal_length[0].tolist(), cam.principal_point[0].tolist()
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    z = d / (n[0] * (xs - cx) / fx + n[1] * (ys - cy) / fy + n[2])
    assert (out.mask == 1).all()
    assert out.depth.dtype == np.float32
    np.testing.assert_allclose(out.depth, z, rtol=1e-4)


def test_nearer_mesh_hides_farther_in_any_order(renderer, cam):
    near = box([0.0, 0.0, 2.0], [0.4, 0.4, 0.1])
    far = box([0.15, 0.1, 2.5], [0.6, 0.6, 0.1])
    for order in ([near, far], [far, near]):
        i_near = 1 + [m is near for m in order].index(True)
        red_blue = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
        out = renderer.render([m[0] for m in order], [m[1] for m in order], cam, colors=red_blue, shading=False)
        near_px = convex_fill(project(cam, near[0]))
        inner = ndimage.binary_erosion(near_px)
        assert (out.mask[inner] == i_near).all()
        assert (out.image[inner] == np.array(red_blue[i_near - 1]) * 255).all()
        np.testing.assert_allclose(out.depth[inner], 2.0 - 0.05, atol=1e-5)
        far_only = out.mask == 3 - i_near
        assert far_only.sum() > 100 and not (far_only & near_px).any()


def test_empty_scene_leaves_image_unchanged(renderer, renderer_aa, cam):
    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    v, f = box([0, 0, 2.0], [0.3, 0.3, 0.3])
    for r in (renderer, renderer_aa):
        np.testing.assert_array_equal(r.overlay(image, [], f, cam), image)
        np.testing.assert_array_equal(r.overlay(image, v - [0, 0, 5.0], f, cam), image)  # behind the camera
        np.testing.assert_array_equal(r.overlay(image, v + [5.0, 0, 0], f, cam), image)  # outside the view
        out = r.render(np.zeros((0, 3)), np.zeros((0, 3), int), cam, background=image)
        np.testing.assert_array_equal(out.image, image)
        assert not out.mask.any() and not out.depth.any()
    assert image is not renderer.overlay(image, v, f, cam)  # never drawn in place


def test_per_vertex_colours_interpolate(renderer, cam):
    v = np.array([[-1, -1, 3], [1, -1, 3], [1, 1, 3], [-1, 1, 3]], float)
    colors = np.array([[255, 0, 0], [0, 0, 255], [0, 0, 255], [255, 0, 0]], np.uint8)  # red left, blue right
    out = renderer.render(v, np.array([[0, 1, 2], [0, 2, 3]]), cam, colors=colors, shading=False)
    row = out.image[57].astype(int)
    (fx, _), (cx, _) = cam.focal_length[0].tolist(), cam.principal_point[0].tolist()
    xs = np.arange(W) + 0.5
    t = ((xs - cx) / fx * 3 + 1) / 2  # fraction from left to right along the quad at this row
    inside = (t > 0) & (t < 1)
    np.testing.assert_allclose(row[inside, 0], 255 * (1 - t[inside]), atol=2)
    np.testing.assert_allclose(row[inside, 2], 255 * t[inside], atol=2)


@pytest.mark.parametrize("corner_uvs", [False, True])
def test_texture_orientation(renderer, cam, corner_uvs):
    # Texture rows from the top: red | green over blue | white. v is up, so red/green is the quad's top.
    tex = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8).repeat(32, 0).repeat(32, 1)
    v = np.array([[-1, -1, 3], [1, -1, 3], [1, 1, 3], [-1, 1, 3]], float)  # camera y is down: v[0] is top-left
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    out = renderer.render(v, f, cam, textures=tex, uvs=uv[f] if corner_uvs else uv, shading=False)
    u0, v0 = project(cam, np.array([[0.0, 0.0, 3.0]]))[0].astype(int)
    d = 15
    np.testing.assert_array_equal(out.image[v0 - d, u0 - d], [255, 0, 0])
    np.testing.assert_array_equal(out.image[v0 - d, u0 + d], [0, 255, 0])
    np.testing.assert_array_equal(out.image[v0 + d, u0 - d], [0, 0, 255])
    np.testing.assert_array_equal(out.image[v0 + d, u0 + d], [255, 255, 255])


def test_msaa_softens_edges_and_opacity_blends(renderer, renderer_aa, cam):
    v, f = box([0.0, 0.0, 2.0], [0.5, 0.5, 0.5], rot([0.0, 0.0, 0.3]))
    black = np.zeros((H, W, 3), np.uint8)
    hard = renderer.render(v, f, cam, colors=(1.0, 1.0, 1.0), shading=False, background=black).image[..., 0]
    soft = renderer_aa.render(v, f, cam, colors=(1.0, 1.0, 1.0), shading=False, background=black).image[..., 0]
    assert set(np.unique(hard)) == {0, 255}
    partial = (soft > 0) & (soft < 255)
    assert partial.sum() > 50
    assert abs(int(soft.astype(int).sum()) - int(hard.astype(int).sum())) < 0.02 * hard.astype(int).sum()
    grey = np.full((H, W, 3), 100, np.uint8)
    half = renderer.render(v, f, cam, colors=(1.0, 1.0, 1.0), shading=False, background=grey, opacity=0.5).image
    assert set(np.unique(half)) == {100, 178}  # 0.5 * 255 + 0.5 * 100 rounded


def test_shading_lights_the_front_and_is_smooth(renderer, cam):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    out = renderer.render(s.vertices + [0, 0, 3.0], s.faces, cam, colors=(0.7, 0.7, 0.7))
    lum = out.image.astype(float).mean(-1)
    inside = out.mask == 1
    assert 40 < lum[inside].min() and lum[inside].max() < 255
    # Key light comes from the upper left: that quadrant of the sphere is brighter than the lower right.
    u0, v0 = project(cam, np.array([[0.0, 0.0, 3.0]]))[0].astype(int)
    assert lum[v0 - 12, u0 - 12] > lum[v0 + 12, u0 + 12] + 30
    # Smooth normals: no facet steps between neighbouring pixels in the interior.
    core = ndimage.binary_erosion(inside, iterations=2)
    assert np.abs(np.diff(lum, axis=1))[core[:, 1:]].max() < 12


def test_colours_and_default_palette(renderer, cam):
    from hmr.render import DEFAULT_PALETTE

    v, f = box([-0.3, 0, 2.0], [0.3, 0.3, 0.3])
    v2 = v + [0.6, 0, 0]
    out = renderer.render([v, v2], f, cam, shading=False)
    for i in (1, 2):
        np.testing.assert_allclose(out.image[out.mask == i].mean(0), np.array(DEFAULT_PALETTE[i - 1]) * 255, atol=1)
    same = renderer.render(np.stack([v, v2]), f, cam, colors=[(10, 20, 30), (1.0, 0.5, 0.0)], shading=False).image
    np.testing.assert_array_equal(same[out.mask == 1][0], [10, 20, 30])
    np.testing.assert_array_equal(same[out.mask == 2][0], [255, 128, 0])


def test_reuse_across_frames_is_deterministic(renderer_aa, cam):
    image = np.full((H, W, 3), 30, np.uint8)
    a = box([0, 0, 2.0], [0.4, 0.4, 0.4], rot([0.2, 0.3, 0]))
    b = box([0.1, 0.1, 2.5], [0.8, 0.2, 0.3])
    first = renderer_aa.overlay(image, *a, cam)
    renderer_aa.overlay(image, [a[0], b[0]], [a[1], b[1]], cam)
    np.testing.assert_array_equal(renderer_aa.overlay(image, *a, cam), first)


def test_default_camera_is_full_image(renderer):
    v, f = box([0, 0, 60.0], [0.5, 1.0, 0.3])
    cam = Camera.full_image(W, H)
    np.testing.assert_array_equal(renderer.render(v, f).mask, renderer.render(v, f, cam).mask)


def test_bad_input_messages(renderer, cam):
    v, f = box([0, 0, 2.0], [0.3, 0.3, 0.3])
    with pytest.raises(ValueError, match="does not match the Renderer"):
        renderer.render(v, f, Camera.full_image(W * 2, H))
    with pytest.raises(ValueError, match="background/image must be"):
        renderer.overlay(np.zeros((H, W + 1, 3), np.uint8), v, f, cam)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 8\)"):
        renderer.render(v, f + 1, cam)
    with pytest.raises(ValueError, match="one per mesh"):
        renderer.render([v, v], [f, f, f], cam)
    with pytest.raises(ValueError, match="per-vertex"):
        renderer.render([v, v], f, cam, colors=[(1.0, 0.0, 0.0), np.ones((5, 3))])
    with pytest.raises(ValueError, match="colors must be one RGB"):
        renderer.render(v, f, cam, colors=np.ones((5, 3)))
    with pytest.raises(ValueError, match="no uvs"):
        renderer.render(v, f, cam, textures=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="mesh 1: vertices contain NaN"):
        renderer.render([v, v * np.nan], f, cam)
    with pytest.raises(ValueError, match="opacity"):
        renderer.render(v, f, cam, opacity=2)


def test_renderer_is_bound_to_its_thread(renderer, cam):
    v, f = box([0, 0, 2.0], [0.3, 0.3, 0.3])
    errors, masks = [], []

    def other():
        try:
            renderer.render(v, f, cam)
        except RuntimeError as e:
            errors.append(str(e))
        with Renderer(W, H, samples=1) as own:  # a thread's own renderer works
            masks.append(own.render(v, f, cam).mask)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "thread" in errors[0]
    np.testing.assert_array_equal(masks[0], renderer.render(v, f, cam).mask)


def test_closed_renderer_raises(renderer, cam):  # ``renderer``: skips when there is no GL
    r = Renderer(W, H, samples=1)
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.render(*box([0, 0, 2.0], [0.3, 0.3, 0.3]), cam)


def test_missing_egl_gives_one_clear_error(monkeypatch):
    import moderngl

    def fail(**kwargs):
        raise Exception("eglInitialize failed")

    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(RenderUnavailableError, match="apt-get install libegl1"):
        gl_context(device_index=987)


def test_side_and_top_views_frame_the_scene(renderer, cam):
    near = box([-0.2, 0.0, 2.0], [0.2, 0.6, 0.2])
    far = box([0.2, 0.0, 4.0], [0.2, 0.6, 0.2])
    verts, faces = [near[0], far[0]], [near[1], far[1]]
    white = np.array([255, 255, 255])
    for image in (renderer.side_view(verts, faces, cam), renderer.top_view(verts, faces, cam)):
        fg = (image != white).any(-1)
        assert fg.sum() > 200
        ys, xs = np.nonzero(fg)
        assert xs.min() > 0 and ys.min() > 0 and xs.max() < W - 1 and ys.max() < H - 1
    side = renderer.side_view(verts, faces, cam, colors=[(1.0, 0, 0), (0, 0, 1.0)])
    red, blue = side[..., 0] > 200, side[..., 2] > 200
    assert np.nonzero(red & ~blue)[1].mean() < np.nonzero(blue & ~red)[1].mean()  # the nearer one turns left
    top = renderer.top_view(verts, faces, cam, colors=[(1.0, 0, 0), (0, 0, 1.0)])
    red, blue = top[..., 0] > 200, top[..., 2] > 200
    assert np.nonzero(red & ~blue)[0].mean() > np.nonzero(blue & ~red)[0].mean()  # nearer one at the bottom


def test_orbit_keeps_shape_and_fits_margins():
    rng = np.random.default_rng(0)
    pts = [rng.normal(size=(50, 3)) * [2.0, 1.0, 3.0] + [0, 0, 10.0]]
    center = pts[0].mean(0)
    r = orbit_rotation(90, 0)
    np.testing.assert_allclose(r @ [0, 0, -1.0], [-1, 0, 0], atol=1e-12)  # facing the camera -> facing left
    np.testing.assert_allclose(orbit_rotation(0, 90) @ [0, 1.0, 0], [0, 0, 1], atol=1e-12)  # down -> forward
    out = orbit(pts, r, center, np.array([100.0, 100.0]), np.array([64.0, 48.0]), (128, 96), margin=0.1)[0]
    d = np.linalg.norm(out[:, None] - out[None], axis=-1)
    np.testing.assert_allclose(d, np.linalg.norm(pts[0][:, None] - pts[0][None], axis=-1), atol=1e-9)
    u = 100 * out[:, 0] / out[:, 2] + 64
    v = 100 * out[:, 1] / out[:, 2] + 48
    assert u.min() >= 12.8 - 1e-6 and u.max() <= 115.2 + 1e-6 and v.min() >= 9.6 - 1e-6 and v.max() <= 86.4 + 1e-6
    assert min(u.min() - 12.8, 115.2 - u.max(), v.min() - 9.6, 86.4 - v.max()) < 1e-6  # no further than needed


def test_vertex_normals_are_outward_and_unit():
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=2)
    n = vertex_normals(s.vertices.astype(np.float32), s.faces)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(n, s.vertices, atol=0.03)  # area weighting on an icosphere


def test_closed_surfaces_cull_back_faces_whatever_their_winding(renderer, cam):
    from hmr.render.renderer import _ClosedSurfaces

    v, f = box([0.1, 0.0, 2.0], [0.5, 0.4, 0.3], rot([0.3, 0.6, 0.1]))
    closed = _ClosedSurfaces()
    assert closed(f) and closed(f[:, ::-1].copy())
    assert not closed(f[1:])  # a hole
    flipped = f.copy()
    flipped[0] = flipped[0, ::-1]
    assert not closed(flipped)  # inconsistent winding
    assert not closed(np.array([[0, 1, 2], [0, 2, 3]]))
    outward = renderer.render(v, f, cam)
    inward = renderer.render(v, f[:, ::-1], cam)
    np.testing.assert_array_equal(inward.mask, outward.mask)
    np.testing.assert_allclose(inward.depth, outward.depth, rtol=1e-6)  # same up to interpolation order
    assert np.abs(inward.image.astype(int) - outward.image).max() <= 1
    open_box = renderer.render(v, flipped, cam)  # no culling: the same nearest surfaces
    np.testing.assert_array_equal(open_box.mask, outward.mask)
    np.testing.assert_allclose(open_box.depth, outward.depth, rtol=1e-6)
