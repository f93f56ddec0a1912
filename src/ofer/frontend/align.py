"""Face crops: the ArcFace 112x112 alignment and the square appearance crop.

- :func:`align_arcface`: least-squares similarity transform (rotation, uniform scale, translation; no
  shear, no reflection; :func:`ofer.geometry.umeyama`) of the detector's 5 keypoints onto
  :data:`ARCFACE_TEMPLATE`, then an affine warp (bilinear; outside the image is black, as in
  insightface's ``norm_crop``). When the face is shrunk by more than 2x the source region is first
  reduced with area averaging (``antialias=True``), which avoids the aliasing of a plain bilinear warp
  on large photos.
- :func:`crop_appearance`: the square of side 1.6 x mean(box width, box height) centred on the
  detector box, resized to ``size`` (area averaging when shrinking, bilinear when enlarging). Where the
  square leaves the image it is padded with black (``border="constant"``, the default: no invented
  image content, and the same look as the ArcFace crop) or with the replicated edge pixels
  (``border="replicate"``).
"""

from __future__ import annotations

import numpy as np

from ..geometry import similarity_matrix, umeyama

# The standard 5-point ArcFace template for 112x112 crops (insightface ``arcface_dst``), x, y pixels:
# image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112
APPEARANCE_SIZE = 224
APPEARANCE_SCALE = 1.6


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int, antialias: bool = True) -> np.ndarray:
    """``cv2.warpAffine`` to (size, size), black outside; shrinks beyond 2x are area-averaged first."""
    import cv2

    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if antialias and scale < 0.5:
        inverse = cv2.invertAffineTransform(matrix)
        corners = apply_transform(inverse, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
        height, width = image.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, [width, height])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 2, 0, [width, height])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = image[y0:y1, x0:x1]
            new_w = max(1, round((x1 - x0) * scale))
            new_h = max(1, round((y1 - y0) * scale))
            small = cv2.resize(np.ascontiguousarray(region), (new_w, new_h), interpolation=cv2.INTER_AREA)
            # cv2's resize maps region pixel p to p' = (p + 0.5) * factor - 0.5 (pixel centres), so
            # p = (p' + 0.5) / factor - 0.5 + offset and output = A p + t
            factor = np.array([new_w / (x1 - x0), new_h / (y1 - y0)])
            linear = matrix[:, :2] / factor[None, :]
            offset = np.array([x0, y0], dtype=np.float64) + 0.5 / factor - 0.5
            shift = matrix[:, :2] @ offset + matrix[:, 2]
            return cv2.warpAffine(
                small,
                np.hstack([linear, shift[:, None]]),
                (size, size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def arcface_matrix(keypoints: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """2x3 similarity from image pixels to the ArcFace crop (template scaled to ``size``)."""
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(5, 2)
    return similarity_matrix(*umeyama(keypoints, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)))


def align_arcface(
    image: np.ndarray, keypoints: np.ndarray, size: int = ARCFACE_SIZE, antialias: bool = True
) -> np.ndarray:
    """The aligned ArcFace crop (size, size, 3) uint8 RGB of the face with these 5 keypoints (5, 2)."""
    return warp_affine(image, arcface_matrix(keypoints, size), size, antialias=antialias)


def appearance_window(box: np.ndarray, scale: float = APPEARANCE_SCALE) -> tuple[int, int, int]:
    """Integer square window x0, y0, side of the appearance crop of a detector box x1, y1, x2, y2."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)[:4]
    side = max(1, round(scale * 0.5 * ((x2 - x1) + (y2 - y1))))
    x0 = round(0.5 * (x1 + x2) - side / 2)
    y0 = round(0.5 * (y1 + y2) - side / 2)
    return x0, y0, side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, size: int, border: str = "constant") -> np.ndarray:
    """Pixels [y0, y0 + side) x [x0, x0 + side) of the image (padded where outside) resized to (size, size)."""
    import cv2

    if border not in ("constant", "replicate"):
        raise ValueError(f"border must be 'constant' or 'replicate', not {border!r}")
    height, width = image.shape[:2]
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + side, width), min(y0 + side, height)
    if cx1 <= cx0 or cy1 <= cy0:
        square = np.zeros((side, side, 3), dtype=np.uint8)
    else:
        square = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
        pads = (cy0 - y0, y0 + side - cy1, cx0 - x0, x0 + side - cx1)
        if any(pads):
            mode = cv2.BORDER_CONSTANT if border == "constant" else cv2.BORDER_REPLICATE
            square = cv2.copyMakeBorder(square, *pads, mode, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def crop_appearance(
    image: np.ndarray,
    box: np.ndarray,
    size: int = APPEARANCE_SIZE,
    border: str = "constant",
    scale: float = APPEARANCE_SCALE,
) -> np.ndarray:
    """The appearance crop (size, size, 3) uint8: square of side ``scale`` x mean(w, h) around the box centre."""
    x0, y0, side = appearance_window(box, scale)
    return crop_square(image, x0, y0, side, size, border)
