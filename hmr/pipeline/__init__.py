"""Image -> people with meshes (:class:`Pipeline`), videos (:class:`VideoSession`), the output records, and
the public API ``hmr.predict``; configured by one :class:`PipelineConfig`."""

from hmr.pipeline.config import PipelineConfig
from hmr.pipeline.image import FrameResult, PersonResult, Pipeline

__all__ = ["FrameResult", "PersonResult", "Pipeline", "PipelineConfig"]
