"""Reconstruction methods behind one interface (:class:`~ofer.methods.base.Method`) and a registry.

``ofer.methods.get(name).from_run(run, device=...)`` loads a method; ``available()`` lists them.
Importing this package registers the built-in methods: ``ofer``, ``prior``, ``regressor``, ``fit``
(and ``fit-photometric``), ``focus`` (and ``focus-mp``, ``focus-pretrained``).
"""

from . import prior  # noqa: F401  (registers "prior")
from .base import Hypotheses, Method, Reconstruction, ReconstructionSettings, image_generator
from .fit import FitMethod
from .focus.method import FocusMethod
from .ofer import OFER
from .registry import available, get, register
from .regressor import ShapeRegressorMethod

__all__ = ["OFER", "FitMethod", "FocusMethod", "Hypotheses", "Method", "Reconstruction", "ReconstructionSettings",
           "ShapeRegressorMethod", "available", "get", "image_generator", "register"]
