"""Evaluation suite: sample/diversity/plausibility metrics, ranking quality and the NoW-style shape error.

All lengths are millimetres. See :mod:`ofer.evaluation.metrics` and :mod:`ofer.evaluation.ranking` for
the exact definitions, :mod:`ofer.evaluation.now` for the NoW protocol and its folder layout,
:mod:`ofer.evaluation.protocol` for the CO-545-style evaluation of methods,
:mod:`ofer.evaluation.reference` for the reference distribution of ODE and STD-S and
:mod:`ofer.evaluation.photos` for the real-photo report (no 3D ground truth).
"""

from .metrics import (
    VertexGaussian,
    asd,
    asd_o,
    closest_sample_error,
    max_asd_v,
    min_asd_v,
    ode,
    pairwise_rms,
    rms_distance,
    sample_error,
    sample_errors,
    std_s,
)
from .now import (
    NowReport,
    NowResult,
    SurfaceQuery,
    closest_points_on_triangles,
    crop_scan,
    evaluate_now,
    face_crop_sphere,
    now_error,
    now_statistics,
    point_to_surface_distance,
    save_error_heatmap,
)
from .ranking import medoid_index, ranked_errors, ranking_table, topk_overlap

__all__ = [
    "NowReport",
    "NowResult",
    "SurfaceQuery",
    "VertexGaussian",
    "asd",
    "asd_o",
    "closest_points_on_triangles",
    "closest_sample_error",
    "crop_scan",
    "evaluate_now",
    "face_crop_sphere",
    "max_asd_v",
    "medoid_index",
    "min_asd_v",
    "now_error",
    "now_statistics",
    "ode",
    "pairwise_rms",
    "point_to_surface_distance",
    "ranked_errors",
    "ranking_table",
    "rms_distance",
    "sample_error",
    "sample_errors",
    "save_error_heatmap",
    "std_s",
    "topk_overlap",
]
