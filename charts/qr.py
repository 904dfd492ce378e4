"""QR codes for survey links: for the kiosk's screen (PNG, SVG) and for the desk (a table tent).

Pure functions, URL and words in, bytes out; the words come from the caller (i18n lives in
``handlers``). Every image is made from one module matrix, :func:`qr_matrix`: error
correction level M (15 % of the code may be lost to glare, a crease or a coffee ring, while
the code stays coarse enough to scan from a metre) and the four-module quiet zone the
standard asks for, included in the matrix, so no caller can crop it off.

The PNG is the matrix scaled by an integer factor and written by Pillow (already here for
matplotlib): one array operation instead of qrcode drawing a rectangle per module, and every
module exactly ``box_size`` pixels. The SVG is qrcode's single-path image with a white
background, so it shows on a dark kiosk theme too. The table tent is a matplotlib ``Figure``
(object API, Agg; no ``pyplot``, no ``rcParams`` changes): a PDF to print and a PNG to preview
in Telegram. Rendering the tent takes a few hundred milliseconds: run it in an executor.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import qrcode
import qrcode.constants
import qrcode.exceptions
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text as MplText
from PIL import Image
from qrcode.image.svg import SvgPathFillImage

from charts.style import INK, MUTED
from charts.text import text_width, wrap_to_width

__all__ = [
    "A4_MM",
    "PNG_DPI",
    "QUIET_ZONE",
    "qr_matrix",
    "render_qr_png",
    "render_qr_svg",
    "render_table_tent",
    "table_tent_figure",
]

QUIET_ZONE = 4  # modules of white around the code, as ISO/IEC 18004 requires
A4_MM = (210.0, 297.0)
PNG_DPI = 150  # the tent's preview: 1240 × 1754 px, sharp on a phone, ~100 KB
PDF_IMAGE_DPI = 300  # the code's raster inside the PDF: print resolution

_FONT = "DejaVu Sans"  # the charts' font: full Cyrillic, shipped with matplotlib
_PT_PER_MM = 72 / 25.4
_MARGIN_MM = 12.0  # from the sheet's edges and the fold: printers cannot print the last 4–5 mm
_GAP_MM = 9.0  # between the code and the text column
_CODE_MM = 95.0  # the code with its quiet zone: scans from about a metre (ten times its width)
_FOLD_COLOR = "#999999"


def qr_matrix(url: str) -> np.ndarray:
    """The code's modules, ``True`` for dark, quiet zone included: a square bool array."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"a QR code needs a non-empty URL, got {url!r}")
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(url)
    try:
        code.make(fit=True)
    except (qrcode.exceptions.DataOverflowError, ValueError):  # qrcode 8 says "Invalid version (was 41 …)"
        raise ValueError(f"URL of {len(url)} characters is too long for a QR code; use a shorter link") from None
    return np.array(code.get_matrix(), dtype=bool)


def render_qr_png(url: str, box_size: int = 10) -> bytes:
    """The code as a black-and-white PNG, ``box_size`` pixels a module (1-bit, a few KB)."""
    if box_size < 1:
        raise ValueError(f"box_size must be at least 1 pixel, got {box_size!r}")
    light = ~qr_matrix(url)
    pixels = np.repeat(np.repeat(light, box_size, axis=0), box_size, axis=1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render_qr_svg(url: str) -> bytes:
    """The code as a standalone SVG: one path, white background, a viewBox of one unit per
    module (quiet zone included), so it scales to any screen without blurring."""
    qr_matrix(url)  # the same checks and error messages as the other renderers
    image = qrcode.make(url, image_factory=SvgPathFillImage, error_correction=qrcode.constants.ERROR_CORRECT_M,
                        border=QUIET_ZONE, box_size=10)  # box_size 10 is qrcode's "1 unit (mm) per module"
    buf = io.BytesIO()
    image.save(buf)
    return buf.getvalue()


# --- the table tent -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Block:
    """One text block as laid out: its wrapped lines, their size and style."""

    lines: list[str]
    size: float  # points
    bold: bool = False
    color: str = INK
    line_spacing: float = 1.25  # baseline to baseline, in em

    @property
    def height_pt(self) -> float:
        return self.size * (1 + (len(self.lines) - 1) * self.line_spacing)


def _fit_block(text: str, width_pt: float, sizes: tuple[float, float], max_lines: int, *,
               bold: bool = False, color: str = INK) -> _Block:
    """The largest size (from ``sizes[0]`` down to ``sizes[1]``) at which ``text`` wraps into
    ``max_lines`` without cutting; at the smallest size the last line ends with "…"."""
    size, smallest = sizes
    while size > smallest:
        lines = wrap_to_width(text, width_pt, size, bold=bold, max_lines=max_lines + 1, dpi=72)
        if len(lines) <= max_lines and not any(line.endswith("-") for line in lines):
            return _Block(lines, size, bold, color)
        size -= 1
    return _Block(wrap_to_width(text, width_pt, smallest, bold=bold, max_lines=max_lines, dpi=72), smallest,
                  bold, color)


def _url_lines(url: str, width_pt: float, size: float) -> list[str]:
    """The URL broken anywhere (it has no spaces) into lines no wider than ``width_pt``."""
    lines, current = [], ""
    for char in url:
        if current and text_width(current + char, size, dpi=72) > width_pt:
            lines.append(current)
            current = ""
        current += char
    return [*lines, current]


class _Panel:
    """One face of the tent: coordinates in mm from its lower left corner as the reader sees
    it, mapped to the sheet, turned by 180° for the upper half."""

    def __init__(self, fig: Figure, sheet_mm: tuple[float, float], origin_mm: tuple[float, float],
                 size_mm: tuple[float, float], *, upside_down: bool) -> None:
        self.fig = fig
        self.sheet_w, self.sheet_h = sheet_mm
        self.ox, self.oy = origin_mm
        self.w, self.h = size_mm
        self.upside_down = upside_down

    def to_sheet(self, x: float, y: float) -> tuple[float, float]:
        if self.upside_down:
            x, y = self.w - x, self.h - y
        return (self.ox + x) / self.sheet_w, (self.oy + y) / self.sheet_h

    def text(self, x: float, y: float, text: str, size: float, *, ha: str = "left", va: str = "baseline",
             bold: bool = False, color: str = INK, gid: str | None = None) -> None:
        fx, fy = self.to_sheet(x, y)
        self.fig.add_artist(MplText(
            fx, fy, text, fontsize=size, fontfamily=_FONT, fontweight="bold" if bold else "normal", color=color,
            ha=ha, va=va, rotation=180 if self.upside_down else 0, rotation_mode="anchor",
            transform=self.fig.transFigure, gid=gid,
        ))

    def block(self, x: float, top: float, block: _Block, *, gid: str) -> float:
        """Draw ``block`` with its first line's cap height at ``top``; returns its bottom."""
        y = top - block.size * 0.73 / _PT_PER_MM  # DejaVu's cap height is 0.73 em
        for line in block.lines:
            self.text(x, y, line, block.size, bold=block.bold, color=block.color, gid=gid)
            y -= block.size * block.line_spacing / _PT_PER_MM
        return top - block.height_pt / _PT_PER_MM

    def image(self, x: float, y: float, side: float, matrix: np.ndarray, raster_dpi: float) -> float:
        """The code as an image of about ``side`` mm from ``(x, y)``, snapped to whole raster
        pixels so that every module is drawn with the same number of them (a sharp, evenly
        gridded code in the PNG and in the PDF's 300-dpi raster); returns the side drawn."""
        modules = matrix.shape[0]
        side_px = max(1, round(side / 25.4 * raster_dpi / modules)) * modules
        side = side_px / raster_dpi * 25.4
        fx, fy = self.to_sheet(x + side, y + side) if self.upside_down else self.to_sheet(x, y)
        width_px, height_px = self.fig.get_size_inches() * raster_dpi
        ax = self.fig.add_axes((round(fx * width_px) / width_px, round(fy * height_px) / height_px,
                                side_px / width_px, side_px / height_px))
        ax.set_axis_off()
        pixels = np.where(np.rot90(matrix, 2) if self.upside_down else matrix, 0, 255).astype(np.uint8)
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest", resample=False,
                  extent=(0, modules, modules, 0), aspect="equal", gid="qr-code")
        ax.set_xlim(0, modules)
        ax.set_ylim(modules, 0)
        return side


def table_tent_figure(url: str, *, title: str, call_to_action: str, point_label: str, office_name: str,
                      fmt: Literal["pdf", "png"] = "png") -> Figure:
    """An A4 sheet that folds across the middle into a tent standing on the desk.

    Both halves carry the same face, the upper one printed upside down. Folded, the upper half
    becomes the tent's other side and would otherwise stand on its head. Two faces, as on
    printed table tents, because a tent gets put down either way round and turned by whoever
    wipes the desk, and a counter or hall desk is often approached from both sides: whichever
    side the client sees, it shows the code the right way up.

    Each face (landscape, 210 × 148.5 mm): the code on the left, 95 mm with its quiet zone
    (a code scans from about ten times its width: a metre), the URL in small type under it
    for those who type it; on the right the title in large bold type, the call to action, and
    at the bottom the point (large, so the client knows whose work they rate) and the office. Text
    is real text in DejaVu Sans (Cyrillic and Latin; embedded in the PDF, so it is searchable
    and prints sharp) and shrinks to fit rather than overflow. A dashed line marks the fold.
    ``fmt`` sets the sheet: exactly A4 with the code rastered at 300 dpi for the PDF, the usual
    1240 × 1754 pixels of A4 at 150 dpi for the PNG.
    """
    if fmt not in ("pdf", "png"):
        raise ValueError(f"fmt must be 'pdf' or 'png', got {fmt!r}")
    matrix = qr_matrix(url)
    sheet_w, sheet_h = A4_MM
    if fmt == "png":
        raster_dpi: float = PNG_DPI
        fig = Figure(figsize=(1240 / PNG_DPI, 1754 / PNG_DPI), dpi=PNG_DPI)
    else:
        raster_dpi = PDF_IMAGE_DPI  # the PDF backend rasters images at the figure's dpi
        fig = Figure(figsize=(sheet_w / 25.4, sheet_h / 25.4), dpi=raster_dpi)
    fig.patch.set_facecolor("white")
    panel_h = sheet_h / 2
    for upside_down in (False, True):
        panel = _Panel(fig, A4_MM, (0.0, panel_h if upside_down else 0.0), (sheet_w, panel_h),
                       upside_down=upside_down)
        _draw_face(panel, matrix, url, title=title, call_to_action=call_to_action, point_label=point_label,
                   office_name=office_name, raster_dpi=raster_dpi)
    fig.add_artist(Line2D([0.02, 0.98], [0.5, 0.5], transform=fig.transFigure, color=_FOLD_COLOR, linewidth=0.8,
                          linestyle=(0, (6, 4)), gid="fold-line"))
    return fig


def _draw_face(panel: _Panel, matrix: np.ndarray, url: str, *, title: str, call_to_action: str, point_label: str,
               office_name: str, raster_dpi: float) -> None:
    m = _MARGIN_MM
    side = min(_CODE_MM, panel.h - 2 * m - 8)
    url_size = 9.0
    while url_size > 6.5 and len(_url_lines(url, side * _PT_PER_MM, url_size)) > 1:
        url_size -= 0.5
    url_lines = _url_lines(url, side * _PT_PER_MM, url_size)
    url_step = url_size * 1.25 / _PT_PER_MM
    url_h = url_size / _PT_PER_MM + (len(url_lines) - 1) * url_step
    side = min(side, panel.h - 2 * m - 2 - url_h)
    content_top = (panel.h + side + 2 + url_h) / 2  # code and URL centred on the face
    side = panel.image(m, content_top - side, side, matrix, raster_dpi)
    y = content_top - side - 2 - url_size * 0.73 / _PT_PER_MM
    for line in url_lines:
        panel.text(m + side / 2, y, line, url_size, ha="center", color=MUTED, gid="url")
        y -= url_step
    content_bottom = y + url_step - url_size * 0.24 / _PT_PER_MM

    x = m + side + _GAP_MM
    width_pt = (panel.w - m - x) * _PT_PER_MM
    top = content_top - side * QUIET_ZONE / matrix.shape[0]  # level with the code's dark modules
    office = _fit_block(office_name, width_pt, (12, 9), 2, color=MUTED)
    point = _fit_block(point_label, width_pt, (24, 14), 2, bold=True)
    footer_h = (point.height_pt + office.height_pt) / _PT_PER_MM + 3
    room = top - content_bottom - footer_h - 8
    heading = _fit_block(title, width_pt, (30, 16), 3, bold=True)
    cta = _fit_block(call_to_action, width_pt, (17, 11), 6)
    while (heading.height_pt + cta.height_pt) / _PT_PER_MM + 6 > room and (heading.size > 16 or cta.size > 11):
        heading = _fit_block(title, width_pt, (max(16.0, heading.size - 1), 16), 3, bold=True)
        cta = _fit_block(call_to_action, width_pt, (max(11.0, cta.size - 1), 11), 6)
    below_heading = panel.block(x, top, heading, gid="title")
    panel.block(x, below_heading - 6, cta, gid="call-to-action")
    below_point = panel.block(x, content_bottom + footer_h, point, gid="point")
    panel.block(x, below_point - 3, office, gid="office")


def render_table_tent(url: str, *, title: str, call_to_action: str, point_label: str, office_name: str,
                      fmt: Literal["pdf", "png"] = "pdf") -> bytes:
    """The table tent as a one-page A4 PDF to print, or a 1240 × 1754 PNG (150 dpi) to
    preview in Telegram. See :func:`table_tent_figure` for what is on it and why."""
    fig = table_tent_figure(url, title=title, call_to_action=call_to_action, point_label=point_label,
                            office_name=office_name, fmt=fmt)
    buf = io.BytesIO()
    if fmt == "pdf":
        # no creation date: the same tent gives the same bytes
        FigureCanvasPdf(fig).print_pdf(buf, metadata={"CreationDate": None, "Title": title, "Subject": url})
    else:
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        image.convert("RGB").save(buf, format="PNG", compress_level=6, dpi=(PNG_DPI, PNG_DPI))
    return buf.getvalue()
