"""File input and output (meshes, ...)."""

from .mesh import load_mesh, save_mesh

__all__ = ["load_mesh", "save_mesh"]
