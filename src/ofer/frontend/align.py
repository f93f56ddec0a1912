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
- :func:`crop_window` / :func:`crop_photo`: the data engines' framing (the detector box spans
  :data:`BOX_FRACTION` of a square crop), for the photo engine and for methods trained on its pictures.
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


# The engines' framing: the median SCRFD box width / picture width of `ofer synth train` pictures
# (48 samples of seed 11: median 0.405, 10-90 % 0.34-0.46) and the box centre's height (median 0.521
# of the picture). The photo engine crops its faces so, and image-based methods trained on either
# engine's pictures (FOCUS) crop photos the same way.
BOX_FRACTION = 0.405
BOX_CENTRE_Y = 0.521


def crop_window(box: np.ndarray, fraction: float, centre_y: float) -> tuple[int, int, int]:
    """Integer square window x0, y0, side around a detector box (4,): the box spans ``fraction`` of
    the side, its centre sits at half the width and ``centre_y`` of the height."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)[:4]
    side = max(1, round((x2 - x1) / fraction))
    return round(0.5 * (x1 + x2) - 0.5 * side), round(0.5 * (y1 + y2) - centre_y * side), side


def crop_photo(photo: np.ndarray, window: tuple[int, int, int], size: int) -> np.ndarray:
    """The (size, size, 3) uint8 crop of ``window`` (x0, y0, side) of an (H, W, 3) photo.

    Crop pixel ``(u, v)`` shows photo point ``(x0 + u side / size, y0 + v side / size)`` (continuous
    coordinates, pixel centres at +0.5), as :func:`landmarks_in_crop` maps points. Outside the photo
    the crop is filled as FFHQ's alignment does: mirrored, blurred and blended towards the border's
    median colour.
    """
    import cv2

    x0, y0, side = window
    height, width = photo.shape[:2]
    small = cv2.resize(photo, (max(1, round(width * size / side)), max(1, round(height * size / side))),
                       interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / width, small.shape[0] / height
    kx, ky = size / (side * sx), size / (side * sy)
    matrix = np.array([[kx, 0.0, (0.5 - x0 * sx) * kx - 0.5], [0.0, ky, (0.5 - y0 * sy) * ky - 0.5]])
    crop = cv2.warpAffine(small, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    scale = size / side
    centres = np.arange(size) + 0.5
    outside_x = np.maximum(-x0 * scale - centres, centres - (width - x0) * scale)
    outside_y = np.maximum(-y0 * scale - centres, centres - (height - y0) * scale)
    outside = np.maximum(outside_y[:, None], outside_x[None, :])
    if outside.max() <= 0:
        return crop
    reach = float(outside.max())
    seam = max(2.0, 0.03 * size)  # the blur fades in over this many pixels on both sides of the photo's edge
    image = crop.astype(np.float32)
    blurred = cv2.GaussianBlur(image, (0, 0), max(1.0, 0.25 * reach))
    median = np.median(np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]]), axis=0).astype(np.float32)
    image = image + (blurred - image) * np.clip((outside + seam) / (2 * seam), 0.0, 1.0)[..., None]
    image = image + (median - image) * (0.6 * np.clip(outside / max(1.0, reach), 0.0, 1.0))[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)



