"""Headless rendering: meshes over images, side/top views, synthetic-data maps, 2D and 3D skeletons.

See docs/rendering.md. OpenGL runs through EGL (Mesa's llvmpipe on the CPU, a GPU's driver when present).
"""

from hmr.render.context import RenderUnavailableError, gl_context
from hmr.render.primitives import skeleton_mesh
from hmr.render.renderer import DEFAULT_PALETTE, Renderer, RenderOutput, thread_renderer, vertex_normals
from hmr.render.skeleton import SIDE_COLORS, SKELETON_EDGES, draw_keypoints, skeleton_edges
from hmr.render.views import orbit, orbit_rotation

__all__ = [
    "DEFAULT_PALETTE", "Renderer", "RenderOutput", "RenderUnavailableError", "SIDE_COLORS", "SKELETON_EDGES",
    "draw_keypoints", "gl_context", "orbit", "orbit_rotation", "skeleton_edges", "skeleton_mesh",
    "thread_renderer", "vertex_normals",
]  # fmt: skip
