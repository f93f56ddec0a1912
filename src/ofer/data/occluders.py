"""Occluders for synthetic data: art from a registry (emoji glyphs, procedural shapes) and placement.

Art comes from two sources, never from files shipped with the project:

- emoji of Debian's ``fonts-noto-color-emoji`` (Apache-2.0/OFL), rendered with Pillow into RGBA
  images (hands get a random skin-tone modifier);
- procedural drawings: surgical masks and scarves fitted to the face's landmarks, sunglasses and
  bands over the eyes, and random shapes (ellipses, polygons, bars) filled with plain colours,
  gradients, stripes, checks or noise.

Placement uses the 2D iBUG-68 landmarks of the face in the image, so sunglasses sit on the eyes,
masks on the nose and mouth, and hands or objects somewhere over the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import OferError

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_SIZE = 109  # the bitmap strike of Noto Color Emoji
# "eyes" (eyewear and bands over the eyes) came last so that older mixes, which lack it, draw as before
CATEGORIES = ("hand", "object", "random", "none", "eyes")
SKIN_TONES = ("", "\U0001F3FB", "\U0001F3FC", "\U0001F3FD", "\U0001F3FE", "\U0001F3FF")
HAND_GLYPHS = ("\u270B", "\U0001F91A", "\U0001F590", "\U0001F44B", "\U0001F44D", "\U0001F44C", "\u270C", "\U0001F91E", "\U0001F44A", "\U0001F91B")
# Hand-held or worn objects: glyph -> where it goes ("eyes", "mouth", "cheek", "forehead", "any").
OBJECT_GLYPHS = {
    "\U0001F576": "eyes",  # sunglasses
    "\u2615": "mouth",  # hot beverage
    "\U0001F964": "mouth",  # cup with straw
    "\U0001F4F1": "cheek",  # phone
    "\U0001F3A4": "mouth",  # microphone
    "\U0001F354": "mouth",  # hamburger
    "\U0001F355": "mouth",  # pizza
    "\U0001F34E": "mouth",  # apple
    "\U0001F369": "mouth",  # doughnut
    "\U0001F366": "mouth",  # ice cream
    "\U0001F4D6": "any",  # book
    "\U0001F3A9": "forehead",  # top hat
    "\U0001F9E2": "forehead",  # cap
    "\U0001F9E3": "mouth",  # scarf
    "\U0001F33F": "any",  # plant
    "\u2602": "any",  # umbrella
    "\U0001F9E4": "any",  # gloves
    "\U0001F4F7": "eyes",  # camera
}
PROCEDURAL_OBJECTS = ("surgical_mask", "scarf_band")


def _glyph_kind(glyph: str) -> str:
    return f"emoji U+{ord(glyph[0]):04X}"


# Every kind an occluder can have, in a fixed order (append only: shards store the index).
OCCLUDER_KINDS = ("none", "random_shapes", *PROCEDURAL_OBJECTS, "sunglasses", "eye_band",
                  *dict.fromkeys(_glyph_kind(g) for g in (*HAND_GLYPHS, *OBJECT_GLYPHS)))
# The evaluation groups of FOCUS's paper (A.11.6): kinds over the eyes, over mouth and chin, hands, the rest
GLASSES_LIKE = ("sunglasses", "eye_band", *(_glyph_kind(g) for g, where in OBJECT_GLYPHS.items() if where == "eyes"))
MASK_LIKE = (*PROCEDURAL_OBJECTS, _glyph_kind("\U0001F9E3"))
KIND_GROUPS = ("unoccluded", "glasses", "mask_scarf", "hand", "object", "random")


def kind_index(kind: str) -> int:
    """The index of an :class:`Occlusion`'s ``kind`` in :data:`OCCLUDER_KINDS` (what shards store)."""
    return OCCLUDER_KINDS.index(kind)


def kind_group(kind: str) -> str:
    """The evaluation group (:data:`KIND_GROUPS`) of an occluder kind."""
    if kind == "none":
        return "unoccluded"
    if kind == "random_shapes":
        return "random"
    if kind in GLASSES_LIKE:
        return "glasses"
    if kind in MASK_LIKE:
        return "mask_scarf"
    if kind in {_glyph_kind(g) for g in HAND_GLYPHS}:
        return "hand"
    return "object"


@dataclass
class Occlusion:
    """An occluder drawn into an image.

    Attributes:
        image: (H, W, 3) uint8, the occluded picture.
        mask: (H, W) bool, pixels covered by the occluder.
        category: one of ``CATEGORIES``.
        kind: what was drawn (glyph name, ``surgical_mask``, ``random_shapes`` ...).
    """

    image: np.ndarray
    mask: np.ndarray
    category: str
    kind: str


def emoji_available() -> bool:
    return EMOJI_FONT.is_file()


@lru_cache(maxsize=256)
def render_emoji(text: str) -> np.ndarray:
    """RGBA (h, w, 4) uint8 picture of an emoji, tightly cropped to its alpha."""
    if not emoji_available():
        raise OferError(f"emoji font not found at {EMOJI_FONT}: install the Debian package fonts-noto-color-emoji")
    font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_SIZE)
    canvas = Image.new("RGBA", (EMOJI_SIZE * 3, EMOJI_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise OferError(f"the emoji font has no glyph for {text!r}")
    return np.asarray(canvas.crop(box))


def paste_art(image: np.ndarray, art: Image.Image, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite RGBA ``art`` centred at ``centre``; returns the new image and the coverage mask."""
    height, width = image.shape[:2]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    layer.paste(art, (int(round(centre[0] - art.width / 2)), int(round(centre[1] - art.height / 2))), art)
    rgba = np.asarray(layer).astype(np.float32) / 255.0
    alpha = rgba[..., 3:4]
    out = image.astype(np.float32) / 255.0 * (1 - alpha) + rgba[..., :3] * alpha
    return (out * 255 + 0.5).astype(np.uint8), alpha[..., 0] > 0.5


def transform_art(art: np.ndarray, width_px: float, angle_deg: float, flip: bool) -> Image.Image:
    """RGBA ``art`` (h, w, 4) mirrored if ``flip``, resized to ``width_px`` wide, rotated by ``angle_deg`` (CCW)."""
    picture = Image.fromarray(art)
    if flip:
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = max(4.0, width_px) / picture.width
    picture = picture.resize((max(1, int(picture.width * scale)), max(1, int(picture.height * scale))), Image.LANCZOS)
    return picture.rotate(angle_deg, resample=Image.BICUBIC, expand=True)


def face_frame(landmarks: np.ndarray) -> dict[str, np.ndarray | float]:
    """Anchor points and sizes of a face from its 2D iBUG-68 landmarks (68, 2), in pixels."""
    eyes = 0.5 * (landmarks[36:42].mean(0) + landmarks[42:48].mean(0))
    mouth = landmarks[48:60].mean(0)
    width = float(np.linalg.norm(landmarks[16] - landmarks[0]))
    eye_vec = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    return {
        "eyes": eyes,
        "mouth": mouth,
        "nose": landmarks[30],
        "chin": landmarks[8],
        "forehead": eyes + (eyes - mouth) * 0.9,
        "cheeks": landmarks[[2, 14]] * 0.6 + landmarks[30] * 0.4,
        "width": width,
        "angle": float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0]))),
    }


def _hand(image, landmarks, rng) -> Occlusion:
    frame = face_frame(landmarks)
    glyph = HAND_GLYPHS[rng.integers(len(HAND_GLYPHS))] + SKIN_TONES[rng.integers(len(SKIN_TONES))]
    art = transform_art(render_emoji(glyph), frame["width"] * rng.uniform(0.55, 0.95), rng.uniform(-60, 60), rng.random() < 0.5)
    anchor = landmarks[rng.integers(17, 68)]  # somewhere on the inner face
    centre = anchor + rng.normal(0, 0.12, 2) * frame["width"]
    out, mask = paste_art(image, art, tuple(centre))
    return Occlusion(out, mask, "hand", _glyph_kind(glyph))


def _glyph_object(image, landmarks, rng) -> Occlusion:
    frame = face_frame(landmarks)
    glyphs = list(OBJECT_GLYPHS)
    glyph = glyphs[rng.integers(len(glyphs))]
    where = OBJECT_GLYPHS[glyph]
    if where == "eyes":
        width, angle, centre = frame["width"] * rng.uniform(0.85, 1.05), -frame["angle"], frame["eyes"]
    else:
        width, angle = frame["width"] * rng.uniform(0.45, 0.8), rng.uniform(-30, 30)
        if where == "cheek":
            centre = frame["cheeks"][rng.integers(2)]
        else:
            centre = frame[where] if where != "any" else landmarks[rng.integers(17, 68)]
        centre = centre + rng.normal(0, 0.06, 2) * frame["width"]
    art = transform_art(render_emoji(glyph), width, angle, rng.random() < 0.5)
    out, mask = paste_art(image, art, tuple(centre))
    return Occlusion(out, mask, "object", _glyph_kind(glyph))


def _cloth_colour(rng) -> tuple[int, int, int]:
    palette = [(170, 205, 230), (235, 240, 245), (40, 40, 45), (120, 170, 140), (200, 80, 90), (90, 110, 170)]
    base = np.array(palette[rng.integers(len(palette))], float) + rng.normal(0, 8, 3)
    return tuple(int(c) for c in np.clip(base, 0, 255))


def _draw_polygon(image, polygon: np.ndarray, colour, rng, shade: bool = True) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.polygon([tuple(p) for p in polygon], fill=colour + (255,))
    if shade:  # fabric folds: a few darker horizontal lines, kept inside the polygon
        alpha = np.asarray(layer)[..., 3].copy()
        top, bottom = polygon[:, 1].min(), polygon[:, 1].max()
        for y in np.linspace(top, bottom, 5)[1:-1]:
            draw.line([(polygon[:, 0].min(), y), (polygon[:, 0].max(), y)], fill=tuple(int(c * 0.85) for c in colour) + (255,), width=2)
        layer = layer.filter(ImageFilter.GaussianBlur(0.8))
        layer.putalpha(Image.fromarray(alpha))
    return paste_art(image, layer, (width / 2, height / 2))


def _surgical_mask(image, landmarks, rng) -> Occlusion:
    """A mask from the nose bridge to under the chin, following the jaw line."""
    jaw = landmarks[2:15].copy()
    jaw += (jaw - landmarks[30]) * 0.08  # slightly outside the face contour
    bridge = landmarks[28] + (landmarks[29] - landmarks[28]) * rng.uniform(0.0, 0.8)
    top = np.array([jaw[0], bridge, jaw[-1]])
    polygon = np.concatenate([jaw, top[::-1][1:2]])
    out, mask = _draw_polygon(image, polygon, _cloth_colour(rng), rng)
    return Occlusion(out, mask, "object", "surgical_mask")


def _scarf_band(image, landmarks, rng) -> Occlusion:
    """A band of cloth across the lower face, from below the nose or the mouth downwards."""
    frame = face_frame(landmarks)
    top_y = landmarks[rng.choice([33, 51, 62])][1] + rng.normal(0, 0.03) * frame["width"]
    left, right = landmarks[0][0] - 0.15 * frame["width"], landmarks[16][0] + 0.15 * frame["width"]
    bottom = landmarks[8][1] + 0.3 * frame["width"]
    slope = rng.normal(0, 0.08) * frame["width"]
    polygon = np.array([[left, top_y - slope], [right, top_y + slope], [right, bottom], [left, bottom]])
    out, mask = _draw_polygon(image, polygon, _cloth_colour(rng), rng)
    return Occlusion(out, mask, "object", "scarf_band")


def _eyewear(image, landmarks, rng) -> Occlusion:
    """Something over both eyes: procedural sunglasses (40 %), a cloth band (30 %) or an eye glyph."""
    choice = rng.random()
    if choice < 0.4:
        return _sunglasses(image, landmarks, rng)
    if choice < 0.7:
        return _eye_band(image, landmarks, rng)
    glyphs = [glyph for glyph, where in OBJECT_GLYPHS.items() if where == "eyes"]
    frame = face_frame(landmarks)
    glyph = glyphs[rng.integers(len(glyphs))]
    art = transform_art(render_emoji(glyph), frame["width"] * rng.uniform(0.85, 1.05), -frame["angle"], rng.random() < 0.5)
    out, mask = paste_art(image, art, tuple(frame["eyes"] + rng.normal(0, 0.03, 2) * frame["width"]))
    return Occlusion(out, mask, "eyes", _glyph_kind(glyph))


def _sunglasses(image, landmarks, rng) -> Occlusion:
    """Two dark lenses (rounded, tilted with the eyes) centred on the eyes, and a bridge."""
    height, width = image.shape[:2]
    frame = face_frame(landmarks)
    eye_width = float(np.linalg.norm(landmarks[39] - landmarks[36]) + np.linalg.norm(landmarks[45] - landmarks[42])) / 2
    half = eye_width * rng.uniform(0.8, 1.0) * np.array([1.0, rng.uniform(0.6, 0.85)])
    angle = np.radians(frame["angle"])
    axes = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    power = rng.uniform(0.4, 1.0)  # 1: ellipse; smaller: a rounder rectangle
    outline = np.c_[np.sign(np.cos(t)) * np.abs(np.cos(t)) ** power, np.sign(np.sin(t)) * np.abs(np.sin(t)) ** power]
    mask_image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_image)
    centres = [eye.mean(0) - axes[1] * half[1] * 0.15 for eye in (landmarks[36:42], landmarks[42:48])]
    for centre in centres:
        draw.polygon([tuple(p) for p in centre + (outline * half) @ axes], fill=255)
    draw.line([tuple(c + axes[0] * half[0] * side) for c, side in zip(centres, (1, -1))], fill=255,
              width=max(2, int(0.03 * frame["width"])))
    mask = np.asarray(mask_image) > 127
    tint = np.array([(25, 25, 30), (60, 40, 25), (20, 35, 60), (70, 70, 75)][rng.integers(4)], float) + rng.normal(0, 6, 3)
    shine = np.linspace(1.25, 0.8, height)[:, None, None]  # a vertical gradient reads as glass
    out = np.where(mask[..., None], np.clip(tint * shine, 0, 255), image).astype(np.uint8)
    return Occlusion(out, mask, "eyes", "sunglasses")


def _eye_band(image, landmarks, rng) -> Occlusion:
    """A band of cloth across the eyes, from the brows to below the eyes (a blindfold, a bandana)."""
    frame = face_frame(landmarks)
    top = landmarks[17:27, 1].min() - rng.uniform(0.0, 0.08) * frame["width"]
    bottom = landmarks[[40, 41, 46, 47], 1].max() + rng.uniform(0.03, 0.12) * frame["width"]
    left, right = landmarks[0][0] - 0.15 * frame["width"], landmarks[16][0] + 0.15 * frame["width"]
    slope = np.tan(np.radians(frame["angle"])) * (right - left) / 2
    polygon = np.array([[left, top - slope], [right, top + slope], [right, bottom + slope], [left, bottom - slope]])
    out, mask = _draw_polygon(image, polygon, _cloth_colour(rng), rng)
    return Occlusion(out, mask, "eyes", "eye_band")


def random_texture(height: int, width: int, rng) -> np.ndarray:
    """(H, W, 3) uint8 texture: plain, gradient, stripes, checks or smoothed noise."""
    kind = rng.integers(5)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:height, 0:width]
    if kind == 0:
        t = np.zeros((height, width))
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
    elif kind == 2:
        period = rng.uniform(4, 20)
        t = (np.floor((xx * np.cos(rng.uniform(0, np.pi)) + yy) / period) % 2).astype(float)
    elif kind == 3:
        size = int(rng.integers(4, 16))
        t = ((xx // size + yy // size) % 2).astype(float)
    else:
        noise = Image.fromarray((rng.random((max(2, height // 8), max(2, width // 8))) * 255).astype(np.uint8))
        t = np.asarray(noise.resize((width, height), Image.BICUBIC)).astype(float) / 255.0
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.uint8)


def _random_shapes(image, landmarks, rng) -> Occlusion:
    """One to three random shapes (ellipse, polygon, bar) with random textures over the face."""
    height, width = image.shape[:2]
    frame = face_frame(landmarks)
    coverage = np.zeros((height, width), dtype=bool)
    out = image
    for _ in range(int(rng.integers(1, 4))):
        shape_mask = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(shape_mask)
        centre = landmarks[rng.integers(17, 68)] + rng.normal(0, 0.1, 2) * frame["width"]
        radius = frame["width"] * rng.uniform(0.12, 0.35)
        kind = rng.integers(3)
        if kind == 0:
            r = radius * rng.uniform(0.5, 1.5, 2)
            draw.ellipse([centre[0] - r[0], centre[1] - r[1], centre[0] + r[0], centre[1] + r[1]], fill=255)
        elif kind == 1:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            pts = centre + radius * rng.uniform(0.5, 1.3, (len(angles), 1)) * np.c_[np.cos(angles), np.sin(angles)]
            draw.polygon([tuple(p) for p in pts], fill=255)
        else:
            angle = rng.uniform(0, np.pi)
            direction = np.array([np.cos(angle), np.sin(angle)]) * radius * 2
            draw.line([tuple(centre - direction), tuple(centre + direction)], fill=255, width=int(radius * rng.uniform(0.4, 0.9)))
        alpha = np.asarray(shape_mask) > 127
        texture = random_texture(height, width, rng)
        out = np.where(alpha[..., None], texture, out)
        coverage |= alpha
    return Occlusion(out.astype(np.uint8), coverage, "random", "random_shapes")


def occlude(image: np.ndarray, landmarks: np.ndarray, category: str, rng: np.random.Generator) -> Occlusion:
    """Draw one occluder of ``category`` onto ``image`` (H, W, 3) uint8 given the face's 2D landmarks (68, 2)."""
    if category == "none":
        return Occlusion(image.copy(), np.zeros(image.shape[:2], bool), "none", "none")
    if category == "hand":
        return _hand(image, landmarks, rng)
    if category == "random":
        return _random_shapes(image, landmarks, rng)
    if category == "eyes":
        return _eyewear(image, landmarks, rng)
    if category == "object":
        choice = rng.random()
        if choice < 0.15:
            return _surgical_mask(image, landmarks, rng)
        if choice < 0.25:
            return _scarf_band(image, landmarks, rng)
        return _glyph_object(image, landmarks, rng)
    raise OferError(f"unknown occluder category {category!r}: use one of {', '.join(CATEGORIES)}")


def occlude_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    face_mask: np.ndarray,
    category: str,
    rng: np.random.Generator,
    coverage: tuple[float, float] = (0.1, 0.6),
    tries: int = 12,
) -> Occlusion:
    """Like :func:`occlude`, retried until the occluder covers a fraction of the face within ``coverage``.

    Args:
        face_mask: (H, W) bool, pixels of the face region (e.g. rendered front-face vertices).
    The last try is kept if none lands in the range (the caller can check ``mask``).
    """
    if category == "none":
        return occlude(image, landmarks, category, rng)
    area = max(1, int(face_mask.sum()))
    result = None
    for _ in range(tries):
        result = occlude(image, landmarks, category, rng)
        fraction = (result.mask & face_mask).sum() / area
        if coverage[0] <= fraction <= coverage[1]:
            break
    return result
