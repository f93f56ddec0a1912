"""File input and output: atomic writes (:mod:`.atomic`), meshes (:mod:`.mesh`), restricted unpickling
(:mod:`.safe_pickle`).

The mesh functions are loaded on first use, so that importing the light submodules (``ofer.config``
uses :mod:`.atomic`) does not pay for trimesh.
"""

__all__ = ["load_mesh", "save_mesh"]


def __getattr__(name: str):
    if name in __all__:
        from . import mesh

        return getattr(mesh, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
