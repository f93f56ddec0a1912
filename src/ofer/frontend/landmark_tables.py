"""Landmark index tables, written once: iBUG-68 from MediaPipe's 478 points, iBUG-68 parts, detector points.

iBUG-68 order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67.
"Right" is the subject's right (on the image's left for a frontal face).
"""

from __future__ import annotations

import numpy as np

# MediaPipe face-mesh point (of the 478) for each iBUG-68 landmark; independent of any mesh.
MEDIAPIPE_TO_IBUG68 = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 98, 97, 2, 326, 327,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip

IBUG68_PARTS = {
    "jaw": slice(0, 17),
    "right_brow": slice(17, 22),
    "left_brow": slice(22, 27),
    "nose_bridge": slice(27, 31),
    "nose_lower": slice(31, 36),
    "right_eye": slice(36, 42),
    "left_eye": slice(42, 48),
    "outer_lips": slice(48, 60),
    "inner_lips": slice(60, 68),
}
IBUG68_NOSE_TIP = 30
IBUG68_MOUTH_CORNERS = (48, 54)  # subject's right, left


def ibug68_from_mediapipe(points: np.ndarray) -> np.ndarray:
    """(..., 478 or 468, D) MediaPipe points -> (..., 68, D) iBUG-68 points."""
    return np.asarray(points)[..., list(MEDIAPIPE_TO_IBUG68), :]


def keypoints5_from_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """(..., 68, D) iBUG-68 points -> (..., 5, D) in the detector's keypoint order.

    The order of :data:`ofer.frontend.detect.KEYPOINT_NAMES` for a frontal face: eye centres (subject's
    right, then left = image left, image right), nose tip, mouth corners (subject's right, left).
    """
    lmk = np.asarray(landmarks)
    right, left = IBUG68_MOUTH_CORNERS
    return np.stack(
        [
            lmk[..., IBUG68_PARTS["right_eye"], :].mean(-2),
            lmk[..., IBUG68_PARTS["left_eye"], :].mean(-2),
            lmk[..., IBUG68_NOSE_TIP, :],
            lmk[..., right, :],
            lmk[..., left, :],
        ],
        axis=-2,
    )
