"""Classic landmark fitting as a method: the face model fitted to MediaPipe's landmarks of the photo."""

from .method import FitMethod

__all__ = ["FitMethod"]
