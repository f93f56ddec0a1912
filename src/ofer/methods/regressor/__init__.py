"""The deterministic ArcFace -> shape regressor (MICA-like baseline)."""

from .method import ShapeRegressorMethod
from .network import NETWORK, RegressorConfig, ShapeRegressor

__all__ = ["NETWORK", "RegressorConfig", "ShapeRegressor", "ShapeRegressorMethod"]
