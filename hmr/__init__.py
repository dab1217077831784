"""hmr: 3D human mesh recovery toolkit."""

__version__ = "0.1.0"
