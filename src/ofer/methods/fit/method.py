"""``--method fit``: the face model fitted to MediaPipe's landmarks of each photo (one hypothesis).

::

    method = FitMethod.from_run()                           # no checkpoints: the built-in head
    rec = method.reconstruct([load_image("photo.jpg")])[0]  # Reconstruction (or InputError: no face)
    rec.shape, rec.expressions[0], rec.placement            # fitted shape, expression, pose and camera

The main face is found by the front end's detector, MediaPipe's landmarks are taken around its box
(:func:`~ofer.fitting.observe`) and :func:`~ofer.fitting.fit_landmarks` fits shape, expression, head
pose and camera at once (deterministic: no seed, no samples). ``fit-photometric`` then refines them
with the photometric term on the photo (SH light, low-rank albedo; ``PHOTOMETRIC_STEPS``): better on
renders (identity 2.9 -> 2.2 mm), worse on real photos (it also explains pasted occluders and hair),
so ``fit`` stays landmark-only. The neutral identity (index 0 of the
placement) gets the pose and camera of the fitted expression (index 1). The sampling settings do
not apply; embeddings cannot be reconstructed (:attr:`needs_images`).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from ...devices import resolve_device
from ...errors import InputError, OferError
from ...facemodels import FaceModel
from ...fitting import PHOTOMETRIC_STEPS, FitOptions, LandmarkObservations, fit_landmarks, observe
from ...frontend import main_face
from ..base import Method, Reconstruction, ReconstructionSettings, image_names, make_reconstruction
from ..image_frame import placeable, set_placement
from ..loading import face_model_of_any
from ..registry import register


@register
class FitMethod(Method):
    name = "fit"
    label = "landmark fit"
    description = "classic deterministic optimisation: face model fitted to MediaPipe landmarks (one hypothesis)"
    needs_run = False
    needs_images = True

    def __init__(self, face_model: FaceModel, run=None, options: Optional[FitOptions] = None):
        self.face_model = face_model.eval()
        self.encoders = {}
        self.run = run
        self.options = options or self.default_options()
        self.device = torch.device("cpu")

    @staticmethod
    def default_options() -> FitOptions:
        return FitOptions()

    @classmethod
    def from_run(cls, run=None, face_model: Optional[FaceModel] = None, device="cpu") -> "FitMethod":
        """The fitter of ``face_model``; else of the face model of ``run``'s networks; else the built-in head."""
        face_model = face_model_of_any(run, face_model)
        if not placeable(face_model):
            raise OferError(f"face model {face_model.spec} has no landmark embedding: method 'fit' cannot fit it")
        return cls(face_model, run).to(resolve_device(device))

    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        raise OferError(f"method {self.name!r} needs images, not embeddings")

    def reconstruct(self, images: list[np.ndarray], settings: Optional[ReconstructionSettings] = None,
                    names: Optional[list[str]] = None, place: bool = True) -> list[Reconstruction | InputError]:
        """RGB images (H, W, 3) uint8 -> per image a fitted :class:`Reconstruction`, or an InputError if no face.

        The fit itself places the meshes, so ``place`` changes nothing here.
        """
        return [self._one(image, name) for image, name in zip(images, image_names(images, names))]

    @torch.no_grad()
    def _one(self, image: np.ndarray, name: str) -> Reconstruction | InputError:
        started = time.perf_counter()
        detections = self.frontend().detect([image])[0]
        index = main_face(detections, image.shape)
        box = None if index is None else np.asarray(detections[index].box, dtype=np.float64)
        face = None if box is None else observe(image, box)
        if face is None:
            return InputError(f"{name}: no face found")
        timings = {"frontend": time.perf_counter() - started}
        started = time.perf_counter()
        model = self.cpu_face_model()
        fit = fit_landmarks(model, LandmarkObservations.from_mediapipe([face], image.shape[:2]), self.options,
                            images=image[None])
        timings["fit"] = time.perf_counter() - started
        rec = make_reconstruction(model, self.name, name, fit.shape, torch.zeros(1), 0, fit.code, box=box,
                                  timings=timings)
        neutral68 = fit.placement.project(model(fit.shape).landmarks68.float().cpu())
        set_placement(rec, fit.placement.select(torch.tensor([0, 0])), fit.reprojection_error.repeat(2),
                      torch.cat([neutral68, fit.landmarks68]))
        return rec


@register
class PhotometricFitMethod(FitMethod):
    name = "fit-photometric"
    label = "landmark + photometric fit"
    description = "the landmark fit refined on the photo's colours (SH light, low-rank albedo; one hypothesis)"

    @staticmethod
    def default_options() -> FitOptions:
        return FitOptions(photometric_steps=PHOTOMETRIC_STEPS)
