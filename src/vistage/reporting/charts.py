"""Charts without a plotting library: inline SVG line charts (learning curves, the reliability
diagram) and a PNG heatmap for confusion matrices too large for a table."""

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .escape import html_text

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
Series = dict[str, tuple[list, list]]


def png_bytes(img: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))).save(buf, format="PNG")
    return buf.getvalue()


def _range(values: np.ndarray, fixed: tuple[float, float] | None, min_span: float) -> tuple[float, float]:
    if fixed is not None:
        return fixed
    lo, hi = float(values.min()), float(values.max())
    return (lo - 0.5, hi + 0.5) if hi - lo < 1e-12 else (lo, max(hi, lo + min_span))


def line_chart(title: str, series: Series, width: int = 350, height: int = 240, x_label: str = "epoch",
               x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
               dashed: tuple[str, ...] = (), markers: bool = False, legend_left: bool = False) -> str:
    """An inline SVG line chart of several (x, y) series (a series named in `dashed` is drawn dashed)."""
    series = {k: v for k, v in series.items() if len(v[0])}
    if not series:
        return ""
    x0, x1 = _range(np.concatenate([np.asarray(x, float) for x, _ in series.values()]), x_range, 1)
    y0, y1 = _range(np.concatenate([np.asarray(y, float) for _, y in series.values()]), y_range, 0)
    left, right, top, bottom = 62, 10, 25, 30
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
             f'font-family="sans-serif">',
             f'<text x="{left}" y="15" font-weight="bold">{html_text(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>']
    for frac in (0, 0.5, 1):
        y = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    parts.append(f'<text x="{left}" y="{height - 10}">{x0:g}</text>'
                 f'<text x="{left + pw}" y="{height - 10}" text-anchor="end">{x1:g} ({html_text(x_label)})</text>')
    for i, (name, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [(px(a), py(b)) for a, b in zip(x, y)]
        dash = ' stroke-dasharray="5,4"' if name in dashed else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="'
                     + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        if (markers or len(pts) == 1) and name not in dashed:  # one point (one epoch) is no line: a dot
            parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in pts]
        if legend_left:  # inside the plot, top left
            parts.append(f'<text x="{left + 5}" y="{top + 14 + 13 * i}" fill="{color}">{html_text(name)}</text>')
        else:  # on the title's line, right-aligned, clear of the lines
            after = sum(len(n) * 6.5 + 12 for n in list(series)[i + 1:])
            parts.append(f'<text x="{left + pw - after:.1f}" y="15" text-anchor="end" fill="{color}">'
                         f'{html_text(name)}</text>')
    return "".join(parts) + "</svg>"


def reliability_chart(confidence: list[float], accuracy: list[float]) -> str:
    """Accuracy against mean confidence per bin, with the diagonal of a calibrated model."""
    return line_chart("reliability (test)", {"model": (confidence, accuracy), "calibrated": ([0, 1], [0, 1])},
                      width=360, height=300, x_label="confidence", x_range=(0, 1), y_range=(0, 1),
                      dashed=("calibrated",), markers=True, legend_left=True)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _cell_colors(counts: np.ndarray) -> np.ndarray:
    """RGB per cell: the diagonal in blue by recall, the rest in red by the share of the actual class
    (square root, so that the rare confusions of a large matrix stay visible)."""
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    rate = counts / totals
    off = np.sqrt(rate)
    rgb = np.stack([1 - 0.16 * off, 1 - 0.85 * off, 1 - 0.84 * off], axis=-1)  # white -> #d62728
    diag = np.arange(len(counts))
    r = rate[diag, diag][:, None]
    rgb[diag, diag] = 1 - r * (1 - np.array([0.12, 0.47, 0.71]))  # white -> #1f77b4
    return (rgb * 255).round().astype(np.uint8)


def _short(label: str, limit: int = 13) -> str:
    """Long class names keep their start and end (where an index or a variant usually is)."""
    return label if len(label) <= limit else label[:limit - 5] + "…" + label[-4:]


def confusion_png(counts: np.ndarray, labels: list[str], side: int = 600) -> bytes:
    """A heatmap of the confusion matrix (rows: actual, columns: predicted), with every k-th label."""
    n = len(labels)
    cell = max(1, min(24, side // max(n, 1)))
    grid = Image.fromarray(_cell_colors(counts)).resize((n * cell, n * cell), Image.Resampling.NEAREST)
    font, margin = _font(11), 96
    img = Image.new("RGB", (margin + n * cell + 10, margin + n * cell + 10), "white")
    img.paste(grid, (margin, margin))
    draw = ImageDraw.Draw(img)
    draw.rectangle([margin - 1, margin - 1, margin + n * cell, margin + n * cell], outline="#999")
    step = max(1, math.ceil(14 / cell))  # labels at least 14 px apart
    # column labels: drawn as rows of a strip (with room for the outer labels' height) which is then
    # turned a quarter, to read upwards
    pad = 8
    strip = Image.new("RGB", (margin, n * cell + 2 * pad), "white")
    strip_draw = ImageDraw.Draw(strip)
    for i in range(0, n, step):
        name, middle = _short(labels[i]), i * cell + cell / 2
        draw.text((margin - 4, margin + middle), name, fill="#222", font=font, anchor="rm")
        strip_draw.text((4, pad + middle), name, fill="#222", font=font, anchor="lm")
    img.paste(strip.rotate(90, expand=True), (margin - pad, 0))
    return png_bytes(img)
