"""The figure of ``ofer eval photos`` (``photos.png``): per photo, its copies and each method's meshes.

Per photo a row of the plain copies (clean, then each occluder; left out with ``photos=False``),
then one row per method: on each copy the method's first hypothesis, posed by the landmark fit of
that copy, rendered over the photo (``photos=False``: over white, darkened where the occluder
lies), with the iBUG-68 points under the occluder (green: MediaPipe on the clean photo, red: the
hypothesis); last, the ranked identity (neutral, front view).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..facemodels import FaceModel
from ..frontend import BLENDSHAPE_NAMES
from ..frontend.align import appearance_window, crop_square
from ..io.atomic import atomic_path
from ..methods.outputs import render_views
from ..methods.overlay import ALPHA, crop_placement, render_over
from . import photo_metrics as P

__all__ = ["PhotoFigure"]

TILE = 208
CONTEXT = 1.6  # crop side, in detection-box sizes
TRUTH, GUESS = (40, 220, 60), (235, 40, 40)
SHADE = 0.35  # how much the occluder's mask darkens the renders of --no-photos


def _to_crop(points: np.ndarray, window: tuple[int, int, int], size: int) -> np.ndarray:
    x0, y0, side = window
    return (np.asarray(points, np.float64) - (x0, y0)) * (size / side)


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with ``text`` in white on a dark strip along its top."""
    picture = Image.fromarray(tile).convert("RGBA")
    strip = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(strip)
    draw.rectangle([0, 0, picture.width, 17], fill=(0, 0, 0, 150))
    draw.text((4, 2), text, fill=(255, 255, 255, 255), font=_font())
    return np.asarray(Image.alpha_composite(picture, strip).convert("RGB"))


def _dots(tile: np.ndarray, points: np.ndarray, colour) -> np.ndarray:
    picture = Image.fromarray(tile)
    draw = ImageDraw.Draw(picture)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    return np.asarray(picture)


class PhotoFigure:
    """The figure's rows, added while :func:`~ofer.evaluation.photos.evaluate_photos` runs, then ``save``d."""

    def __init__(self, photos: bool = True, size: int = TILE):
        self.photos, self.size = photos, size
        self.rows: list[np.ndarray] = []
        self._seen: set = set()

    def _window(self, photo) -> tuple[int, int, int]:
        return appearance_window(photo.box, CONTEXT)

    def _background(self, photo, copy: str) -> np.ndarray:
        """The copy's crop, or (no photos) a white tile."""
        if self.photos:
            return crop_square(photo.picture(copy), *self._window(photo), self.size)
        return np.full((self.size, self.size, 3), 255, np.uint8)

    def _shade(self, tile: np.ndarray, photo, copy: str) -> np.ndarray:
        """(no photos) ``tile`` darkened where the copy's occluder lies; else ``tile``."""
        if self.photos or copy == "clean":
            return tile
        pixels = np.repeat(photo.mask(copy)[..., None], 3, -1).astype(np.uint8) * 255
        mask = crop_square(pixels, *self._window(photo), self.size)[..., :1] > 127
        return np.where(mask, tile * (1 - SHADE), tile).astype(np.uint8)

    def _overlay(self, photo, copy: str, rec, fit, model: FaceModel, caption: str) -> np.ndarray:
        tile = self._background(photo, copy)
        if rec is None or fit is None:
            return _caption(self._shade(tile, photo, copy), f"{caption}: no face")
        window = self._window(photo)
        placement = crop_placement(fit.placement.select(0), *window, self.size)
        tile = render_over(model, tile, rec.expression_vertices[:1], placement, ALPHA if self.photos else 1.0)[0]
        tile = self._shade(tile, photo, copy)
        if copy in photo.hidden:
            hidden = photo.hidden[copy]
            tile = _dots(tile, _to_crop(photo.landmarks68[hidden], window, self.size), TRUTH)
            tile = _dots(tile, _to_crop(fit.landmarks68[0].numpy()[hidden], window, self.size), GUESS)
        return _caption(tile, caption)

    def _photo_row(self, photo) -> np.ndarray:
        tiles = [_caption(self._background(photo, copy), copy) for copy in photo.copies]
        return np.concatenate([*tiles, self._note(photo)], 1)

    def _note(self, photo) -> np.ndarray:
        """A white tile naming the photo, its person and MediaPipe's expression groups."""
        scores = P.group_values(photo.landmarks.blendshapes, BLENDSHAPE_NAMES)
        lines = [f"person: {photo.person or '?'}", "MediaPipe:"] + [f"  {g} {v:.2f}" for g, v in scores.items()]
        picture = Image.new("RGB", (self.size, self.size), (255, 255, 255))
        ImageDraw.Draw(picture).multiline_text((6, 24), "\n".join(lines), fill=(0, 0, 0), font=_font(), spacing=3)
        return _caption(np.asarray(picture), photo.name)

    def add(self, photo, label: str, result, model: FaceModel) -> None:
        """Add the rows of one method's ``result`` (:class:`~ofer.evaluation.photos.MethodPhoto`) on ``photo``."""
        if self.photos and photo.name not in self._seen:
            self.rows.append(self._photo_row(photo))
        self._seen.add(photo.name)
        captions = [f"{photo.name}: {label}", *photo.occlusions]
        tiles = [self._overlay(photo, copy, result.recs[copy], result.fits[copy], model, caption)
                 for copy, caption in zip(photo.copies, captions)]
        clean = result.recs["clean"]
        if clean is None:
            identity = np.full((self.size, self.size, 3), 255, np.uint8)
        else:
            identity = render_views(model, clean.identity_vertices[None].astype(np.float32), size=self.size)["front"][0]
        self.rows.append(np.concatenate([*tiles, _caption(identity, "ranked identity")], 1))

    def save(self, path) -> None:
        """Write the rows, widest first-padded to one width, as a PNG (nothing if there is no row)."""
        if not self.rows:
            return
        width = max(row.shape[1] for row in self.rows)
        rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in self.rows]
        picture = Image.fromarray(np.concatenate(rows, 0))
        with atomic_path(path) as tmp:
            picture.save(tmp, format="PNG")
