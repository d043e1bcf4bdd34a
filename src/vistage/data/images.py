"""Turning any decoded image into an RGB uint8 array of the store's size."""

import numpy as np
from PIL import Image, ImageOps


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, LA, P, RGBA, CMYK, I;16, ...) to RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything above 255
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / top)).astype(np.uint8), mode="L")
    elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # flatten transparency onto white, the way a viewer shows it
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def fit(img: Image.Image, size: int, policy: str = "crop") -> Image.Image:
    """Make the image size x size: `crop` resizes the shorter side then centre-crops, `pad` resizes
    the longer side then pads to a square. An image already of that size keeps its pixels."""
    if img.size == (size, size):
        return img
    w, h = img.size
    if policy == "pad":
        scale = size / max(w, h)
        resized = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (size, size), (0, 0, 0))
        canvas.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
        return canvas
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    # reducing_gap: PIL first shrinks by an integer factor (fast) for large photos, then resamples
    resized = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return resized.crop((left, top, left + size, top + size))


def to_store_array(img: Image.Image, size: int, policy: str = "crop") -> np.ndarray:
    return np.asarray(fit(to_rgb(img), size, policy), dtype=np.uint8)
