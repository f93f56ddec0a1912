"""ofer: occlusion-robust 3D face reconstruction (OFER, CVPR 2025) and its baselines."""

from importlib.metadata import PackageNotFoundError, version

from .facemodels import FaceModel, FaceModelOutput, load_face_model

try:
    __version__ = version("ofer")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+src"

__all__ = ["FaceModel", "FaceModelOutput", "load_face_model", "__version__"]
