"""Training and evaluation data: one sample schema fed from every format the reference systems use
(docs/data.md): 4D-Humans' webdataset tars, HMR 2.0's evaluation and mocap npz files, SMPLer's TSV sets,
and the synthetic sets ``hmr data synth`` writes."""

from hmr.data.augment import HMR2_AUGMENT, SMPLPOSE_AUGMENT, AugmentConfig, make_sample
from hmr.data.datasets import (
    DataConfig,
    DatasetSpec,
    MixedDataset,
    SampleDataset,
    evaluation_dataset,
    open_reader,
    skip_report,
    training_dataset,
)
from hmr.data.errors import REASONS, BadSample, DatasetLayoutError, SkipCounter
from hmr.data.fields import FilterConfig
from hmr.data.sample import KEYPOINT_NAMES, NUM_KEYPOINTS, PELVIS_INDEX, Annotation, Batch, Sample, collate

__all__ = [
    "HMR2_AUGMENT", "KEYPOINT_NAMES", "NUM_KEYPOINTS", "PELVIS_INDEX", "REASONS", "SMPLPOSE_AUGMENT",
    "Annotation", "AugmentConfig", "BadSample", "Batch", "DataConfig", "DatasetLayoutError", "DatasetSpec",
    "FilterConfig", "MixedDataset", "Sample", "SampleDataset", "SkipCounter", "collate", "evaluation_dataset",
    "make_sample", "open_reader", "skip_report", "training_dataset",
]  # fmt: skip
