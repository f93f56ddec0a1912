"""``--method focus`` (and ``focus-mp``, ``focus-pretrained``): one forward of FOCUS's R and S per photo.

::

    method = FocusMethod.from_run("runs/focus")          # RUN/focus/last.pt
    rec = method.reconstruct([load_image("photo.jpg")])[0]
    rec.identity_vertices, rec.placement, rec.visible_mask   # neutral mesh, pose and camera, S's mask

The main face is found by the front end's detector and cropped as the data engines frame their
pictures (:func:`~ofer.frontend.align.crop_window`), resized to the run's picture size. R gives theta:
the identity, the expression, and the pose and camera of its fixed-focal renderer, which become the
placement in the photo (the crop's intrinsics mapped back; no landmark fit). S on [I_R, I_T] times the
rendered region, binarised by rounding, is the predicted visible-face mask, pasted back into the
photo's frame. ``focus-mp`` subtracts the misfit prior E_MP from the meshes (A.6); ``focus-pretrained``
reads ``pretrained.pt`` (R and S before EM, the paper's "Pretrained"). Deterministic: no seed, one
hypothesis.
"""

from __future__ import annotations

import time
from importlib.resources import files
from pathlib import Path
from typing import ClassVar, Optional, Sequence

import numpy as np
import torch

from ...devices import resolve_device
from ...errors import CheckpointError, InputError, OferError
from ...facemodels import FaceModel
from ...fitting import Placement
from ...frontend import main_face
from ...frontend.align import BOX_CENTRE_Y, BOX_FRACTION, crop_photo, crop_window
from ...runs import CHECKPOINT_FILE, Checkpoint, RunConfig, check_face_model, load_checkpoint, read_payload
from ...weights import DEFAULT_RUN
from ..base import Hypotheses, Method, Reconstruction, ReconstructionSettings, image_names, make_reconstruction
from ..image_frame import set_placement
from ..loading import face_model_of
from ..registry import register
from .model import NETWORK, FocusModel, focus_model_from

PRETRAINED_FILE = "pretrained.pt"
MISFIT_NETWORK = "focus-misfit"  # the folder ofer train focus-misfit writes


def _payload(checkpoint: Checkpoint, stage: str) -> tuple[dict, Path]:
    """The weights of ``stage``: the checkpoint's own (``last``) or its folder's ``pretrained.pt``."""
    if stage == "last":
        return checkpoint.payload, checkpoint.path
    path = checkpoint.folder / PRETRAINED_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (the run's S pretraining has not finished, or it trains R alone)")
    payload = read_payload(path)
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a FOCUS snapshot")
    return payload, path


def _shipped_run() -> Optional[Path]:
    """The shipped run folder if it holds FOCUS weights (``focus/last.pt``), else None."""
    path = Path(str(files("ofer.weights") / DEFAULT_RUN))
    return path if (path / NETWORK / CHECKPOINT_FILE).is_file() else None


def crop_intrinsics(focal: float, size: int, window: tuple[int, int, int]) -> torch.Tensor:
    """(3, 3) K in photo pixels of a camera with ``focal`` px and centred principal point on a ``size`` px
    crop of the photo window (x0, y0, side): crop point u is photo point x0 + u side / size."""
    x0, y0, side = window
    scale = side / size
    return torch.tensor([[focal * scale, 0.0, x0 + size / 2 * scale], [0.0, focal * scale, y0 + size / 2 * scale],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)


def paste_mask(mask: np.ndarray, window: tuple[int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """The (size, size) crop mask in the (H, W) photo frame (zeros outside the window), nearest neighbour."""
    import cv2

    x0, y0, side = window
    full = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    out = np.zeros(shape, np.uint8)
    ys, xs = slice(max(0, y0), min(shape[0], y0 + side)), slice(max(0, x0), min(shape[1], x0 + side))
    out[ys, xs] = full[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return out.astype(bool)


@register
class FocusMethod(Method):
    name = "focus"
    label = "FOCUS"
    description = "FOCUS (seed 002): model-based autoencoder R + outlier segmentation S, one forward (deterministic)"
    needs_images = True
    stage: ClassVar[str] = "last"
    misfit_prior: ClassVar[bool] = False

    def __init__(self, model: FocusModel, face_model: FaceModel, run=None, config: Optional[RunConfig] = None):
        self.model = model.eval()
        self.face_model = face_model.eval()
        self.encoders = {}
        self.run, self.config = run, config
        self.device = torch.device("cpu")

    @classmethod
    def from_run(cls, run=None, face_model: Optional[FaceModel] = None, device="cpu") -> "FocusMethod":
        if run is None:
            shipped = _shipped_run()
            if shipped is None:
                raise OferError(f"method {cls.name!r} has no shipped weights in this installation: pass "
                                f"--checkpoints RUN (a run of ofer train focus)")
            run = shipped
        if not (Path(run) / NETWORK / CHECKPOINT_FILE).is_file():
            raise CheckpointError(f"{Path(run) / NETWORK / CHECKPOINT_FILE}: no FOCUS checkpoint (ofer train focus -o RUN)")
        checkpoint = load_checkpoint(Path(run) / NETWORK, NETWORK)  # format, config and network checked
        payload, path = _payload(checkpoint, cls.stage)
        face_model = face_model or face_model_of(checkpoint)
        check_face_model(checkpoint.config, face_model.info().to_dict(), path)
        try:
            model = focus_model_from(payload, face_model)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: weights do not match the saved architecture "
                                  f"({str(exc).splitlines()[0]})") from None
        if cls.misfit_prior:
            cls._load_misfit(model, Path(run))
        method = cls(model, face_model, run, checkpoint.config)
        return method.to(resolve_device(device))

    @staticmethod
    def _load_misfit(model: FocusModel, run: Path) -> None:
        """E_MP of ``ofer train focus-misfit -o RUN`` into the model's buffers."""
        folder = run / MISFIT_NETWORK
        if not (folder / CHECKPOINT_FILE).is_file():
            raise CheckpointError(f"{folder / CHECKPOINT_FILE}: no misfit prior; measure it with "
                                  f"ofer train focus-misfit --data DIR -o {run}")
        payload = load_checkpoint(folder, MISFIT_NETWORK).payload
        if "misfit_neutral" not in payload:
            raise CheckpointError(f"{folder}: R_syn has not finished training (resume ofer train focus-misfit)")
        for name in ("misfit_neutral", "misfit_expression"):
            value = payload[name]
            if tuple(value.shape) != tuple(getattr(model, name).shape):
                raise CheckpointError(f"{folder}: E_MP of shape {tuple(value.shape)} does not fit this face model")
            getattr(model, name).copy_(value)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def checkpoint_record(self) -> dict:
        return {"run": str(self.run), "stage": self.stage, "misfit_prior": self.misfit_prior}

    def reconstruct_embeddings(self, identity: np.ndarray, appearance: np.ndarray, settings: ReconstructionSettings,
                               keys: Sequence) -> list[Reconstruction]:
        raise OferError(f"method {self.name!r} needs images, not embeddings")

    def reconstruct(self, images: list[np.ndarray], settings: Optional[ReconstructionSettings] = None,
                    names: Optional[list[str]] = None, place: bool = True) -> list[Reconstruction | InputError]:
        """RGB images (H, W, 3) uint8 -> per image a :class:`Reconstruction` with ``visible_mask``, or an
        InputError if no face. R's own pose and camera place the meshes, so ``place`` changes nothing."""
        return [self._one(image, name) for image, name in zip(images, image_names(images, names))]

    @torch.no_grad()
    def encode(self, crops: torch.Tensor):
        """(B, 3, s, s) pictures in [0, 1] -> (theta, rendering, mask in (0, 1) times the region)."""
        nets = self.model.networks()
        theta, rendering = nets.render(crops)
        return theta, rendering, nets.mask(rendering, crops) * rendering.region

    def coefficients(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) identity coefficients and (B, code_dim) codes (expression, jaw zero) of R's theta, on the CPU."""
        params, model = self.model.decoder.split(theta), self.cpu_face_model()
        shapes = (params.identity * self.face_model.shape_std.to(theta)).float().cpu()
        codes = model.join_code(params.expression.float().cpu(), torch.zeros(len(theta), model.pose_dim))
        return shapes, codes

    @torch.no_grad()
    def picture_hypotheses(self, pictures: np.ndarray, settings: ReconstructionSettings, keys: Sequence) -> Hypotheses:
        """The engines' pictures (B, H, W, 3) uint8 are framed already: resized and encoded, no detection.
        One hypothesis each (mm, model frame; E_MP subtracted for ``focus-mp``)."""
        import cv2

        size, model = self.model.config.image_size, self.cpu_face_model()
        crops = np.stack([cv2.resize(np.ascontiguousarray(p), (size, size), interpolation=cv2.INTER_AREA)
                          for p in pictures])
        theta, _, _ = self.encode(torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device))
        shapes, codes = self.coefficients(theta)
        meshes = model(shapes, *model.split_code(codes)).vertices
        if self.misfit_prior:
            meshes = meshes - self.model.misfit_expression.cpu()
        count = len(theta)
        return Hypotheses(shapes=shapes.numpy()[:, None], scores=np.zeros((count, 1)), chosen=np.zeros(count, np.int64),
                          meshes=meshes.numpy()[:, None] * 1000.0)

    @torch.no_grad()
    def _one(self, image: np.ndarray, name: str) -> Reconstruction | InputError:
        started = time.perf_counter()
        detections = self.frontend().detect([image])[0]
        index = main_face(detections, image.shape)
        if index is None:
            return InputError(f"{name}: no face found")
        box = np.asarray(detections[index].box, dtype=np.float64)
        size = self.model.config.image_size
        window = crop_window(box, BOX_FRACTION, BOX_CENTRE_Y)
        crop = torch.from_numpy(crop_photo(image, window, size)).permute(2, 0, 1)[None].float().div(255.0)
        timings = {"frontend": time.perf_counter() - started}
        started = time.perf_counter()
        theta, rendering, mask = self.encode(crop.to(self.device))
        cameras = self.model.decoder.cameras(self.model.decoder.split(theta))
        timings["focus"] = time.perf_counter() - started
        model = self.cpu_face_model()
        shape, code = self.coefficients(theta)
        rec = make_reconstruction(model, self.name, name, shape, torch.zeros(1), 0, code, box=box, timings=timings,
                                  faces_in_image=len(detections))
        if self.misfit_prior:
            rec.identity_vertices = rec.identity_vertices - self.model.misfit_neutral.cpu().numpy()
            rec.expression_vertices = rec.expression_vertices - self.model.misfit_expression.cpu().numpy()
        rotation, translation = cameras.R.double().cpu().expand(2, 3, 3), cameras.T.double().cpu().expand(2, 3)
        intrinsics = crop_intrinsics(self.model.decoder.focal, size, window).expand(2, 3, 3)
        placement = Placement(rotation, translation, intrinsics, "perspective", tuple(int(s) for s in image.shape[:2]))
        landmarks = model(torch.cat([shape, shape]), *model.split_code(torch.cat([torch.zeros_like(code), code])))
        set_placement(rec, placement, torch.full((2,), float("nan")), placement.project(landmarks.landmarks68.double()))
        rec.visible_mask = paste_mask(mask[0, 0].cpu().numpy() >= 0.5, window, image.shape[:2])
        return rec


@register
class FocusMisfitMethod(FocusMethod):
    name = "focus-mp"
    label = "FOCUS-MP"
    description = "FOCUS with its misfit prior E_MP subtracted from the meshes"
    misfit_prior = True


@register
class FocusPretrainedMethod(FocusMethod):
    name = "focus-pretrained"
    label = "FOCUS Pretrained"
    description = "FOCUS's R and S after the unsupervised initialisation, before EM"
    stage = "pretrained"


__all__ = ["FocusMethod", "FocusMisfitMethod", "FocusPretrainedMethod", "crop_intrinsics", "paste_mask"]
