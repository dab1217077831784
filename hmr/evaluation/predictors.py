"""What ``evaluate`` can score: anything that maps a :class:`~hmr.data.Batch` of crops to a
:class:`~hmr.outputs.MeshOutput` per crop. A network runs on the crops as they are; the out-of-the-box fitting
pipeline (BlazePose landmarks + keypoint fitting) runs on each crop as an image, with the crop's camera, so
both are scored from the same crops by the same protocol."""

from __future__ import annotations

import numpy as np
import torch

from hmr.data import Batch
from hmr.geometry import Camera
from hmr.outputs import MeshOutput


class Predictor:
    """Base: ``__call__(batch) -> (MeshOutput for the predicted crops, (B,) bool mask of which were)``."""

    name = "predictor"
    image_size = 256  # the crop side it wants
    body_model = None

    def __call__(self, batch: Batch) -> tuple[MeshOutput | None, torch.Tensor]:
        raise NotImplementedError


class NetworkPredictor(Predictor):
    """A registered network (``hmr.models``) on the batch's crops, on its own device."""

    def __init__(self, model, name: str = ""):
        self.model = model.eval()
        self.name = name or model.config.name
        self.image_size = model.config.image_size
        self.body_model = model.body_model
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, batch: Batch) -> tuple[MeshOutput, torch.Tensor]:
        crops = self.model.normalize(batch.images.to(self.device).float())
        out = self.model(crops).to("cpu")
        return out, torch.ones(len(batch), dtype=torch.bool)


class FittingPredictor(Predictor):
    """The out-of-the-box pipeline without a network: BlazePose on the crop, then the keypoint fit with the
    crop's camera (the dataset's true camera when it has one, else HMR 2.0's default). A crop where BlazePose
    finds no body has no prediction (reported, not scored)."""

    name = "fit"

    def __init__(self, config=None, body_model=None, image_size: int = 256):
        from hmr.pipeline import Pipeline

        self.pipeline = Pipeline(config, body_model=body_model)
        self.body_model = self.pipeline.body_model
        self.image_size = image_size

    def __call__(self, batch: Batch) -> tuple[MeshOutput | None, torch.Tensor]:
        from hmr.detection import Detections

        s = batch.images.shape[-1]
        full = Detections.from_boxes(np.array([[0.0, 0.0, s, s]], np.float32))
        meshes, found = [], []
        for i in range(len(batch)):
            image = np.ascontiguousarray(batch.images[i].permute(1, 2, 0).numpy())
            cam = Camera(batch.focal_length[i : i + 1].double(), batch.principal_point[i : i + 1].double(),
                         torch.tensor([[float(s), float(s)]], dtype=torch.float64))  # fmt: skip
            people = self.pipeline(image, boxes=full, camera=cam).people
            mesh = people[0].mesh if people else None
            found.append(mesh is not None)
            if mesh is not None:
                meshes.append(mesh)
        mask = torch.tensor(found, dtype=torch.bool)
        return (MeshOutput.cat(meshes) if meshes else None), mask
