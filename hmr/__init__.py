"""hmr: 3D human mesh recovery toolkit."""

from hmr.version import __version__

__all__ = ["__version__", "predict"]


def predict(image_or_path, **kwargs):
    """People and 3D meshes in one image (array or file): ``hmr.inference.api.predict``, the CLI's ``hmr demo``."""
    from hmr.inference.api import predict as _predict

    return _predict(image_or_path, **kwargs)
