"""OFER (CVPR 2025): IdGen + IdRank + ExpGen."""

from .generator import CoefficientGenerator, ShapeRanker, rank_vertex_subset
from .method import OFER

__all__ = ["OFER", "CoefficientGenerator", "ShapeRanker", "rank_vertex_subset"]
