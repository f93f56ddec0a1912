"""NoW-style shape error (topology independent): crop, landmark Procrustes, scan-to-mesh refinement.

For one prediction (a mesh with its 7 NoW landmarks) and one ground-truth scan (with its 7 landmarks),
:func:`now_error` follows the NoW benchmark protocol (Sanyal et al. 2019, ``now_evaluation``):

1. **Crop** the scan to a sphere around the face. NoW's 7 landmarks are, in order: right-eye outer,
   right-eye inner, left-eye inner, left-eye outer, nose bottom, right mouth corner, left mouth corner
   ("right" = the subject's right). With the *nose bridge* taken as the midpoint of the two inner eye
   corners, the centre is ``nose_bottom + 0.3 (nose_bridge - nose_bottom)`` and the radius is
   ``1.4 * mean(|right_eye_outer - left_eye_outer|, |nose_bridge - nose_bottom|)`` (the second term is
   the "nose length"). Scan vertices within the sphere (distance <= radius) are the measured points.
2. **Landmark alignment**: the similarity (Umeyama) that maps the predicted 7 landmarks onto the
   scan's 7 (metrical variant: rigid, scale fixed at 1).
3. **Refinement**: scale, rotation and translation of the prediction are refined (from step 2) by
   minimising the mean squared distance from every cropped scan point to the predicted *surface*
   (exact point-to-triangle distance). Each iteration re-computes the exact closest points, tries a
   Gauss-Newton step on the point-to-surface distances (point-to-plane linearisation, 7 or 6
   parameters) and falls back to a closed-form point-to-point similarity step (which cannot increase
   the objective) when the Gauss-Newton step does not lower it; it stops when an iteration lowers
   the objective by less than ``tolerance`` (relative) or after ``max_iterations``.
4. **Errors**: the distance of each cropped scan point to the aligned predicted surface, in mm.
   Aggregation (:func:`now_statistics`) pools the distances of all scans (as NoW does) and reports
   their median, mean and standard deviation. The per-vertex error of the prediction (distance of each
   aligned predicted vertex to the scan surface; NaN outside the crop sphere) comes back too, for
   heat maps.

Closest points are exact (:mod:`.surface`, with the proof of exactness); the alignment lives in
:mod:`.align`, one prediction's error in :mod:`.error`, the folder evaluation in :mod:`.folders`,
heat maps in :mod:`.heatmap`.

Folder layout of :func:`evaluate_now` (all meshes ``.ply`` or ``.obj``; landmark files ``.npy`` or
``.txt`` holding 7 x 3 numbers in the units of their mesh, ground truth also MeshLab ``.pp``)::

    PRED/<subject>/<challenge>/<image>.ply|.obj     the prediction
    PRED/<subject>/<challenge>/<image>.npy|.txt     its 7 landmarks
    (PRED/<subject>/<image>.* is accepted too; its challenge is reported as "-")

    GT/scans/<subject>.obj|.ply   or  GT/<subject>.obj|.ply   or  GT/scans/<subject>/<one scan>.obj|.ply
    landmarks, first found of:  GT/scans_lmks/<subject>.npy|.txt|.pp,  <scan>_lmks.npy|.txt beside the
    scan,  GT/scans_lmks/<subject>/<one file>.npy|.txt|.pp,  GT/scans_lmks_onlypp/<subject>/<one file>.pp
    (the last is the official NoW layout)

Units: each mesh is in metres or millimetres; ``units="auto"`` takes a mesh whose bounding box is
smaller than 10 units in every direction to be in metres. Everything is reported in millimetres.
"""

from .align import Alignment, landmark_alignment, refine_alignment
from .error import NOW_LANDMARK_NAMES, NowResult, crop_scan, face_crop_sphere, now_error, now_statistics
from .folders import (
    NowItem,
    NowPrediction,
    NowReport,
    evaluate_now,
    find_ground_truth,
    find_predictions,
    load_landmarks,
    to_millimetres,
)
from .heatmap import save_error_heatmap, save_now_heatmap
from .surface import SurfaceHit, SurfaceQuery, closest_points_on_triangles, face_normals, point_to_surface_distance

__all__ = [
    "NOW_LANDMARK_NAMES",
    "Alignment",
    "NowItem",
    "NowPrediction",
    "NowReport",
    "NowResult",
    "SurfaceHit",
    "SurfaceQuery",
    "closest_points_on_triangles",
    "crop_scan",
    "evaluate_now",
    "face_crop_sphere",
    "face_normals",
    "find_ground_truth",
    "find_predictions",
    "landmark_alignment",
    "load_landmarks",
    "now_error",
    "now_statistics",
    "point_to_surface_distance",
    "refine_alignment",
    "save_error_heatmap",
    "save_now_heatmap",
    "to_millimetres",
]
