"""Rendering: cameras, rasterisers (all returning one :class:`Fragments` type) and shaders."""

from .fragments import Fragments

__all__ = ["Fragments"]
