"""hmr: 3D human mesh recovery toolkit."""

from hmr.version import __version__

__all__ = ["PipelineConfig", "__version__", "predict"]


def predict(image_or_path, boxes=None, **kwargs):
    """People and 3D meshes in one image (array or file), as ``hmr demo``: :func:`hmr.pipeline.api.predict`."""
    from hmr.pipeline.api import predict as _predict

    return _predict(image_or_path, boxes, **kwargs)


def __getattr__(name: str):
    if name == "PipelineConfig":  # imported on use: ``import hmr`` stays light (hmr --version)
        from hmr.pipeline.config import PipelineConfig

        return PipelineConfig
    raise AttributeError(f"module 'hmr' has no attribute {name!r}")
