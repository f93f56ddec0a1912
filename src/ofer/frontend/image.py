"""Reading photos: any JPEG/PNG (8/16/32-bit, greyscale, palette, alpha) to an RGB uint8 array.

Rules:
- the EXIF orientation tag is applied (the array is what a viewer shows);
- images of more than :data:`MAX_DECODED_PIXELS` pixels are reduced by the smallest integer factor
  that fits (box filter; JPEGs are decoded reduced), more than :data:`MAX_PIXELS` are refused;
- greyscale is repeated over three channels; 16-bit images are scaled by 255/65535, 32-bit integer
  images by 255/65535 when they fit in 16 bits (PNG 16-bit greyscale opens as 32-bit in Pillow), else
  by their maximum; float images in [0, 1] are multiplied by 255;
- transparency (alpha channel, palette or greyscale transparency) is composited over **white**;
- a missing path, a folder, a special file (FIFO, device), a symlink loop, or a file that is not a readable image raises
  :class:`ofer.errors.InputError` with a one-line message that starts with the path.
"""

from __future__ import annotations

import math
import stat
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError, first_line

# Images larger than this many pixels are refused (Pillow's decompression-bomb limit is ~179 Mpx).
MAX_PIXELS = 200_000_000
# Larger images are reduced by an integer factor on reading (a face needs far fewer pixels; a
# 13000 x 13000 RGBA picture would otherwise cost gigabytes in the conversions).
MAX_DECODED_PIXELS = 40_000_000


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array, upright according to its EXIF orientation.

    Raises:
        InputError: the file is missing, is a folder, or is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:  # a symlink loop, a name too long, no permission on a parent
        raise InputError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(mode):  # opening a FIFO waits for a writer forever
        raise InputError(f"{path}: not a regular file (a FIFO, socket or device), not an image")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise InputError(f"{path}: image too large ({image.width}x{image.height})")
                factor = reduction_factor(image.width, image.height)
                if factor > 1 and image.format == "JPEG":  # decoded at 1/2, 1/4 or 1/8 size directly
                    image.draft(image.mode, (image.width // factor, image.height // factor))
                image.load()
                image = ImageOps.exif_transpose(_reduced(image))
                array = to_rgb(image)
        for warning in caught:  # Pillow's warnings (corrupt EXIF, ...) say which file they are about
            warnings.warn(f"{path}: {warning.message}", stacklevel=2)
        return array
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:
            raise InputError(f"{path}: damaged {kind} file (its header cannot be read)") from None
        raise InputError(f"{path}: not an image (unrecognised format)") from None
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: unreadable image ({first_line(exc)})") from None


SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP",
              b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def _signature(path: Path) -> str | None:
    """The image format whose magic bytes ``path`` starts with, if any."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def reduction_factor(width: int, height: int) -> int:
    """The smallest integer factor that brings ``width x height`` to at most :data:`MAX_DECODED_PIXELS`."""
    return max(1, math.ceil(math.sqrt(width * height / MAX_DECODED_PIXELS)))


def _reduced(image):
    """``image`` shrunk by :func:`reduction_factor` (box filter), so that a huge photo costs memory
    for its reduced size only in the conversions that follow."""
    factor = reduction_factor(image.width, image.height)
    if factor == 1:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGBA" if image.mode in ("P", "PA") or "transparency" in image.info else "RGB")
    return image.reduce(factor)


def to_rgb(image) -> np.ndarray:
    """A Pillow image of any mode to an (H, W, 3) uint8 RGB array (see the module rules)."""
    mode = image.mode
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA" if mode == "RGB" else "LA")
        mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image).astype(np.float64)
        peak = float(np.nanmax(array, initial=0.0))
        if mode == "F":
            top = 1.0 if peak <= 1.0 else 255.0
        elif mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit integer: 8- or 16-bit content stored wide, else scaled by its maximum
            top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        grey = np.clip(np.nan_to_num(array) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = np.asarray(image.convert("RGBA")).astype(np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    if mode == "L":
        grey = np.asarray(image)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, 1, ...
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
