"""QR images and the table tent: what they encode is read back — by OpenCV's QR decoder, by
the module grid sampled from the pixels, from the PDF's own image and text."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zlib

import cv2
import numpy as np
import pypdf
import pytest
import qrcode
import qrcode.constants
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from charts.qr import (
    QUIET_ZONE,
    qr_matrix,
    render_qr_png,
    render_qr_svg,
    render_table_tent,
    table_tent_figure,
)

URL = "https://loyalty.example.ru/r/aegiakgmbtyxtv3wsutq"
TENT = {
    "title": "Оцените нашу работу",
    "call_to_action": "Наведите камеру телефона на код — это займёт меньше минуты",
    "point_label": "Окно 1",
    "office_name": "Москва, Тверская 1",
}
SVG = "{http://www.w3.org/2000/svg}"


def fresh_matrix(url: str) -> np.ndarray:
    """The reference: qrcode's own matrix for the URL at level M with a 4-module border."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(url)
    code.make(fit=True)
    return np.array(code.get_matrix(), dtype=bool)


def grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def decode_all(pixels: np.ndarray) -> list[str]:
    found, texts, _, _ = cv2.QRCodeDetector().detectAndDecodeMulti(pixels)
    return sorted(texts) if found else []


def sample_modules(dark: np.ndarray, modules: int) -> np.ndarray:
    """The module grid read from a square image of whole-pixel modules: each module's centre."""
    step = dark.shape[0] / modules
    centres = (np.arange(modules) * step + step / 2).astype(int)
    return dark[np.ix_(centres, centres)]


@pytest.fixture(scope="module")
def tent_pdf() -> bytes:
    return render_table_tent(URL, **TENT, fmt="pdf")


@pytest.fixture(scope="module")
def tent_png() -> bytes:
    return render_table_tent(URL, **TENT, fmt="png")


# --- the code itself ---------------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, "https://yandex.ru/maps/org/1234567890/reviews/", "https://x.ru/r/a",
                                 "https://loyalty.example.ru/r/" + "q" * 200])
def test_png_decodes_to_the_url(url: str) -> None:
    assert decode_all(grey(render_qr_png(url))) == [url]


def test_png_modules_are_the_url_matrix_at_level_m() -> None:
    reference = fresh_matrix(URL)
    dark = grey(render_qr_png(URL, box_size=7)) < 128
    assert np.array_equal(sample_modules(dark, reference.shape[0]), reference)


@pytest.mark.parametrize("box_size", [1, 4, 10])
def test_png_is_box_size_pixels_a_module_quiet_zone_included(box_size: int) -> None:
    modules = fresh_matrix(URL).shape[0]
    assert Image.open(io.BytesIO(render_qr_png(URL, box_size))).size == (modules * box_size, modules * box_size)


def test_png_quiet_zone_is_four_white_modules() -> None:
    dark = grey(render_qr_png(URL, box_size=5)) < 128
    edge = QUIET_ZONE * 5
    assert (dark[:edge].any(), dark[-edge:].any(), dark[:, :edge].any(), dark[:, -edge:].any(),
            dark[edge, edge]) == (False, False, False, False, True)  # the finder pattern starts right after


def test_matrix_is_the_reference_matrix() -> None:
    assert np.array_equal(qr_matrix(URL), fresh_matrix(URL))


def test_svg_is_xml_with_one_unit_per_module() -> None:
    modules = fresh_matrix(URL).shape[0]
    root = ET.fromstring(render_qr_svg(URL))
    assert (root.tag, root.get("viewBox"), root.get("width"), root.get("height")) == \
        (f"{SVG}svg", f"0 0 {modules} {modules}", f"{modules}mm", f"{modules}mm")


def test_svg_path_draws_exactly_the_dark_modules() -> None:
    reference = fresh_matrix(URL)
    root = ET.fromstring(render_qr_svg(URL))
    drawn = np.zeros_like(reference)
    for square in root.find(f"{SVG}path").get("d").split("z")[:-1]:  # "Mx,yHx1Vy1Hxz" per module
        x, y = square[1:].split("H")[0].split(",")
        drawn[int(float(y)), int(float(x))] = True
    assert np.array_equal(drawn, reference)


def test_svg_has_a_white_background_for_dark_kiosk_screens() -> None:
    root = ET.fromstring(render_qr_svg(URL))
    assert root.find(f"{SVG}rect").get("fill") == "white"


@pytest.mark.parametrize("url", ["", "   ", None])
def test_an_empty_url_is_refused(url: object) -> None:
    with pytest.raises(ValueError, match="non-empty URL"):
        render_qr_png(url)  # type: ignore[arg-type]


def test_a_url_too_long_for_any_qr_code_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="too long for a QR code"):
        render_qr_svg("https://x.ru/" + "a" * 3_000)


# --- the table tent ----------------------------------------------------------------------


def pdf_images(pdf: bytes) -> list[np.ndarray]:
    """Dark pixels of each image in the PDF. Decoded here (Flate + PNG predictors) because
    pypdf mis-decodes 1-bit images with predictors, which is how matplotlib stores a
    two-colour image."""
    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    out = []
    for image in page.images:
        obj = image.indirect_reference.get_object()
        width, height, bits = obj["/Width"], obj["/Height"], obj["/BitsPerComponent"]
        assert (bits, obj["/ColorSpace"][0], obj["/ColorSpace"][3]) == (1, "/Indexed", b"\xff\xff\xff\x00\x00\x00")
        stride = (width + 7) // 8
        rows = np.frombuffer(zlib.decompress(obj._data), dtype=np.uint8).reshape(height, stride + 1)
        previous = np.zeros(stride, dtype=np.int64)
        decoded = []
        for kind, raw in zip(rows[:, 0], rows[:, 1:].astype(np.int64), strict=True):
            current = np.zeros(stride, dtype=np.int64)
            for i in range(stride):
                left = current[i - 1] if i else 0
                up, corner = previous[i], previous[i - 1] if i else 0
                if kind == 4:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predicted = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                else:
                    predicted = (0, left, up, (left + up) // 2)[kind]
                current[i] = (raw[i] + predicted) & 0xFF
            decoded.append(current)
            previous = current
        out.append(np.unpackbits(np.array(decoded, dtype=np.uint8), axis=1)[:, :width].astype(bool))
    return out


def test_tent_pdf_is_one_a4_page(tent_pdf: bytes) -> None:
    reader = pypdf.PdfReader(io.BytesIO(tent_pdf))
    box = reader.pages[0].mediabox
    size_mm = (round(float(box.width) / 72 * 25.4), round(float(box.height) / 72 * 25.4))
    assert (tent_pdf[:5], len(reader.pages), size_mm) == (b"%PDF-", 1, (210, 297))


def test_tent_pdf_has_every_text_twice_as_real_cyrillic_text(tent_pdf: bytes) -> None:
    text = pypdf.PdfReader(io.BytesIO(tent_pdf)).pages[0].extract_text().replace("\n", " ")
    assert [text.count(TENT["title"].split()[0]), text.count(TENT["point_label"]), text.count(TENT["office_name"]),
            text.count(URL)] == [2, 2, 2, 2]


def test_tent_pdf_embeds_its_font(tent_pdf: bytes) -> None:
    fonts = pypdf.PdfReader(io.BytesIO(tent_pdf)).pages[0]["/Resources"]["/Font"]
    embedded = {str(f.get_object()["/BaseFont"]).split("+")[-1] for f in fonts.values()
                if "/CharProcs" in f.get_object() or "/FontFile2" in str(f.get_object())}
    assert embedded == {"DejaVuSans", "DejaVuSans-Bold"}


def test_tent_pdf_codes_are_sharp_rasters_of_the_url_one_upside_down(tent_pdf: bytes) -> None:
    reference = fresh_matrix(URL)
    modules = reference.shape[0]
    images = pdf_images(tent_pdf)
    grids = [sample_modules(dark, modules) for dark in images]
    assert ([dark.shape[0] % modules for dark in images],
            sorted([np.array_equal(g, reference), np.array_equal(g, np.rot90(reference, 2))] for g in grids)) == \
        ([0, 0], [[False, True], [True, False]])


def test_tent_pdf_is_the_same_bytes_for_the_same_tent(tent_pdf: bytes) -> None:
    assert render_table_tent(URL, **TENT, fmt="pdf") == tent_pdf


def test_tent_png_is_a4_at_150_dpi(tent_png: bytes) -> None:
    assert Image.open(io.BytesIO(tent_png)).size == (1240, 1754)


def test_tent_png_shows_two_codes_of_the_url(tent_png: bytes) -> None:
    assert decode_all(grey(tent_png)) == [URL, URL]


def test_tent_upper_half_is_the_lower_half_turned_over(tent_png: bytes) -> None:
    pixels = grey(tent_png).astype(int)
    half = pixels.shape[0] // 2
    lower, upper_turned = pixels[half + 30:], np.rot90(pixels[: half - 30], 2)  # leave out the fold line
    assert np.mean(np.abs(lower - upper_turned) > 64) < 0.001  # identical but for anti-aliasing


def test_tent_has_a_fold_line_across_the_middle() -> None:
    fig = table_tent_figure(URL, **TENT)
    (fold,) = [a for a in fig.artists + fig.lines if a.get_gid() == "fold-line"]
    assert list(fold.get_ydata()) == [0.5, 0.5] and fold.get_xdata()[1] - fold.get_xdata()[0] > 0.9


def test_tent_texts_stay_on_their_half_of_the_sheet() -> None:
    fig = table_tent_figure(URL, **TENT)
    renderer = FigureCanvasAgg(fig).get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    outside = []
    for text in fig.texts:
        box = text.get_window_extent(renderer)
        upper = text.get_rotation() == 180
        lo, hi = (height / 2, height) if upper else (0, height / 2)
        if not (0 < box.x0 and box.x1 < width and lo < box.y0 and box.y1 < hi):
            outside.append((text.get_text(), upper))
    assert outside == []


def test_a_long_call_to_action_shrinks_to_fit_rather_than_overflowing() -> None:
    long = dict(TENT, call_to_action=" ".join(["Пожалуйста, оцените, как вас обслужили сегодня."] * 6))
    fig = table_tent_figure(URL, **long)
    renderer = FigureCanvasAgg(fig).get_renderer()
    lower = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts if t.get_rotation() == 0]
    overlaps = [(a, b) for i, (a, box_a) in enumerate(lower) for b, box_b in lower[i + 1:] if box_a.overlaps(box_b)]
    assert overlaps == []


def test_tent_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'pdf' or 'png'"):
        render_table_tent(URL, **TENT, fmt="jpeg")  # type: ignore[arg-type]
