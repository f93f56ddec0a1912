"""Classic landmark fitting as a method: the face model fitted to MediaPipe's landmarks of the photo."""

from .method import FitMethod, PhotometricFitMethod

__all__ = ["FitMethod", "PhotometricFitMethod"]
