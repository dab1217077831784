"""The live camera preview window of ``hmr demo --camera``."""

from __future__ import annotations

import os
import sys

import numpy as np


class Window:
    """Live preview with matplotlib (OpenCV here is the headless build). Closing the window or pressing
    q/Escape stops."""

    def __init__(self, title: str):
        import matplotlib

        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and sys.platform.startswith("linux"):
            raise RuntimeError("no display for the live window; run with --no-window (outputs are still written)")
        import matplotlib.pyplot as plt

        matplotlib.rcParams["toolbar"] = "None"
        self.plt = plt
        self.fig, self.ax = plt.subplots(num=title)
        self.ax.axis("off")
        self.img = None
        self.open = True
        self.fig.canvas.mpl_connect("close_event", lambda _: setattr(self, "open", False))
        self.fig.canvas.mpl_connect(
            "key_press_event", lambda e: e.key in ("q", "escape") and setattr(self, "open", False)
        )
        plt.ion()
        plt.show()

    def __call__(self, picture: np.ndarray, fps: float) -> bool:
        if self.img is None:
            self.img = self.ax.imshow(picture)
        else:
            self.img.set_data(picture)
        self.ax.set_title(f"{fps:.1f} fps")
        self.plt.pause(0.001)
        return self.open
