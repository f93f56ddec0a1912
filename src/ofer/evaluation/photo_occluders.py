"""Occluders pasted on real photos for ``ofer eval photos``, placed from the face's iBUG-68 landmarks.

Every occluder is deterministic (no random numbers) and comes with its pixel mask:

- ``eyes``: a grey band over both eyes, from just above the brows to below the lower lids and
  0.15 inter-ocular distances (IOD) wider than the outer eye corners on each side;
- ``mouth``: a grey box from the nose bottom (landmark 33) to 60 % of the way from the lower lip
  to the chin, 0.12 IOD wider than the lips on each side;
- ``hand``: the raised-hand emoji (U+270B, medium skin tone) of :mod:`ofer.data.occluders`,
  0.75 face widths wide, upright in the face's frame, centred a fifth of the way from the mouth
  to the chin; without the emoji font, a grey ellipse of the same size (``kind`` says which).

The band and the box are rectangles in the face's frame: ``u`` along the outer eye corners (36 ->
45), ``v`` perpendicular to it (image down for an upright face).
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, ImageDraw

from ..data.occluders import SKIN_TONES, Occlusion, emoji_available, face_frame, paste_art, render_emoji, transform_art
from ..errors import OferError

__all__ = ["GREY", "OCCLUDERS", "parse_occluders", "paste_occluder"]

OCCLUDERS = ("eyes", "mouth", "hand")
GREY = (128, 128, 128)
HAND_GLYPH = "\u270B" + SKIN_TONES[3]
HAND_WIDTH = 0.75  # face widths (jaw 0 -> 16)


def parse_occluders(text: str) -> tuple[str, ...]:
    """``"eyes,mouth"`` -> ``("eyes", "mouth")`` (order kept, duplicates dropped); one-line error if unknown."""
    names = tuple(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    unknown = [name for name in names if name not in OCCLUDERS]
    if unknown or not names:
        problem = f"unknown occluder {unknown[0]!r}" if unknown else "no occluder given"
        raise OferError(f"--occluders: {problem} (choose from {', '.join(OCCLUDERS)}, comma-separated)")
    return names


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit axes ``u`` (outer eye corner 36 -> 45) and ``v`` (perpendicular, image down) and the IOD (pixels)."""
    along = landmarks[45] - landmarks[36]
    iod = float(np.linalg.norm(along))
    u = along / max(iod, 1e-9)
    return u, np.array([-u[1], u[0]]), iod


def _rectangle(landmarks: np.ndarray, u_range: tuple[float, float], v_range: tuple[float, float]) -> np.ndarray:
    """(4, 2) corners of the rectangle ``u_range x v_range`` of the face frame (coordinates from landmark 36)."""
    u, v, _ = face_axes(landmarks)
    origin = landmarks[36]
    return np.array([origin + a * u + b * v for a, b in
                     ((u_range[0], v_range[0]), (u_range[1], v_range[0]), (u_range[1], v_range[1]),
                      (u_range[0], v_range[1]))])


def _extent(landmarks: np.ndarray, index, axis: np.ndarray) -> tuple[float, float]:
    """Smallest and largest coordinate of ``landmarks[index]`` along ``axis`` (from landmark 36)."""
    along = (landmarks[index] - landmarks[36]) @ axis
    return float(along.min()), float(along.max())


def eye_band(landmarks: np.ndarray) -> np.ndarray:
    """(4, 2) polygon of the ``eyes`` band of (68, 2) landmarks."""
    u, v, iod = face_axes(landmarks)
    left, right = _extent(landmarks, slice(36, 48), u)
    top = _extent(landmarks, slice(17, 27), v)[0]
    bottom = _extent(landmarks, slice(36, 48), v)[1]
    return _rectangle(landmarks, (left - 0.15 * iod, right + 0.15 * iod), (top - 0.05 * iod, bottom + 0.15 * iod))


def mouth_box(landmarks: np.ndarray) -> np.ndarray:
    """(4, 2) polygon of the ``mouth`` box of (68, 2) landmarks."""
    u, v, iod = face_axes(landmarks)
    left, right = _extent(landmarks, slice(48, 68), u)
    top = _extent(landmarks, [33], v)[0]
    lip, chin = _extent(landmarks, slice(48, 68), v)[1], _extent(landmarks, [8], v)[0]
    return _rectangle(landmarks, (left - 0.12 * iod, right + 0.12 * iod), (top, lip + 0.6 * max(chin - lip, 0.0)))


def _grey(image: np.ndarray, draw) -> tuple[np.ndarray, np.ndarray]:
    """``image`` with the pixels that ``draw(ImageDraw)`` fills on a mask painted grey, and that mask."""
    canvas = Image.new("L", (image.shape[1], image.shape[0]), 0)
    draw(ImageDraw.Draw(canvas))
    mask = np.asarray(canvas) > 127
    return np.where(mask[..., None], np.array(GREY, np.uint8), image), mask


def _polygon(image: np.ndarray, polygon: np.ndarray, kind: str) -> Occlusion:
    out, mask = _grey(image, lambda d: d.polygon([tuple(map(float, p)) for p in polygon], fill=255))
    return Occlusion(out, mask, "object", kind)


_WARNED: set = set()


def _hand_centre(frame: dict) -> np.ndarray:
    """Where the hand goes: a fifth of the way from the mouth centre to the chin."""
    return 0.8 * frame["mouth"] + 0.2 * frame["chin"]


def _hand(image: np.ndarray, landmarks: np.ndarray) -> Occlusion:
    frame = face_frame(landmarks)
    width = HAND_WIDTH * frame["width"]
    if emoji_available():
        art = transform_art(render_emoji(HAND_GLYPH), width, -frame["angle"], False)
        out, mask = paste_art(image, art, tuple(_hand_centre(frame)))
        return Occlusion(out, mask, "hand", "emoji U+270B")
    if "hand" not in _WARNED:
        _WARNED.add("hand")
        warnings.warn("no emoji font (fonts-noto-color-emoji): the hand occluder is a grey ellipse", stacklevel=2)
    cx, cy = _hand_centre(frame)
    rx, ry = width / 2, 0.6 * width
    out, mask = _grey(image, lambda d: d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255))
    return Occlusion(out, mask, "hand", "grey ellipse (no emoji font)")


def paste_occluder(image: np.ndarray, landmarks: np.ndarray, name: str) -> Occlusion:
    """Paste occluder ``name`` (:data:`OCCLUDERS`) on an (H, W, 3) uint8 photo given its (68, 2) landmarks.

    Returns an :class:`~ofer.data.occluders.Occlusion`: the occluded copy and its (H, W) bool mask.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if name == "eyes":
        return _polygon(image, eye_band(landmarks), "grey eye band")
    if name == "mouth":
        return _polygon(image, mouth_box(landmarks), "grey mouth box")
    if name == "hand":
        return _hand(image, landmarks)
    raise OferError(f"unknown occluder {name!r} (choose from {', '.join(OCCLUDERS)})")
