"""Headless OpenGL contexts through EGL (Mesa llvmpipe on the CPU, the GPU driver's EGL when present).

One context per (thread, EGL device) is created on first use and shared by every ``Renderer`` of that
thread: creating one costs ~0.7 s on llvmpipe, switching between them is free. Nothing here sets an
OpenGL platform variable; EGL is requested explicitly from moderngl, so other GL users in the process
(pyrender, a GUI) are unaffected.
"""

from __future__ import annotations

import threading

_SETUP_HINT = (
    "On Debian/Ubuntu install Mesa's EGL (`apt-get install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri`, "
    "as scripts/setup_env.sh does) and moderngl (`pip install moderngl`); on a GPU machine the driver's EGL "
    "is used. GLCONTEXT_DEVICE_INDEX or Renderer(device_index=...) selects the EGL device."
)
_local = threading.local()


class RenderUnavailableError(RuntimeError):
    """No OpenGL context could be created (missing EGL/Mesa libraries or moderngl)."""


def gl_context(device_index: int | None = None):
    """This thread's moderngl context on EGL device ``device_index`` (None: glcontext's default, 0)."""
    contexts = _local.__dict__.setdefault("contexts", {})
    ctx = contexts.get(device_index)
    if ctx is None:
        try:
            import moderngl

            ctx = moderngl.create_standalone_context(backend="egl", require=330, device_index=device_index)
        except Exception as e:  # moderngl raises bare Exception for EGL failures
            raise RenderUnavailableError(
                f"hmr.render could not create an OpenGL context with EGL ({e}). {_SETUP_HINT}"
            ) from e
        contexts[device_index] = ctx
    return ctx
