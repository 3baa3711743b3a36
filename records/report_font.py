"""The CJK font of the consultation report: chosen, cut to the text, made TrueType.

The report embeds its font (a paper record must print the same everywhere) as a
subset holding only the glyphs it uses. Debian's ``fonts-noto-cjk`` ships Noto
Sans CJK as an OpenType collection (``.ttc``) with PostScript (CFF) outlines.
fpdf2 embeds such a face as a CID-keyed CFF font addressed through an embedded
CMap, which viewers render but which text extractors such as pypdf do not
decode (every character comes out as a control byte). So the subset is
converted to TrueType outlines here (fontTools' cu2qu, within 1/1000 em), and
fpdf2 embeds it as a ``CIDFontType2`` with ``Identity-H``: what every reader
and extractor understands. The subset is a few dozen KiB; making it takes
under a second and runs off the event loop.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from records.errors import RecordsError
from records.vocab import ErrorCode

# fontTools is imported where a report is made: the settings name ``DEFAULT_FONT``,
# so every process (the server, each command line) imports this module, and
# fontTools' subsetter alone costs about 0.1 s of start-up.
if TYPE_CHECKING:
    from fontTools.ttLib import TTFont

# Where Debian's fonts-noto-cjk puts Noto Sans CJK (the .ci/run installs it).
DEFAULT_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
# Within a collection, the face for Simplified Chinese (the record's language).
PREFERRED_FACE = "Noto Sans CJK SC"
# The largest distance (font units, of 1000 per em) a converted curve may stray.
MAX_CURVE_ERROR = 1.0
COLLECTIONS = (".ttc", ".otc")
FONT_FILES = (*COLLECTIONS, ".ttf", ".otf")


class ReportFontMissing(RecordsError):
    """The report's CJK font file is missing or unreadable: no report can be made.

    Without it every Chinese character would be left out (or drawn as a box)
    of a document that goes into the patient's paper record, so the report is
    refused rather than produced wrong.
    """

    code = ErrorCode.REPORT_FONT_MISSING


def face_index(path: Path) -> int:
    """The face of a font file to use: in a collection the Simplified Chinese one,
    else the first. Reads only the faces' names (a few milliseconds).

    Raises:
        ReportFontMissing: the file is missing or is not a font.
    """
    from fontTools.ttLib import TTCollection, TTFont

    check_font(path)
    # Opened here (not by fontTools) so that a file it refuses is closed all the same.
    with path.open("rb") as fh:
        try:
            if path.suffix.lower() in COLLECTIONS:
                names = [_family(face) for face in TTCollection(fh, lazy=True).fonts]
            else:
                names = [_family(TTFont(fh, lazy=True))]
        except Exception as exc:  # fontTools raises many kinds for a file that is not a font
            raise _missing(path, f"not a usable font ({exc})") from exc
    for i, name in enumerate(names):
        if PREFERRED_FACE in name:
            return i
    return 0


def check_font(path: Path) -> None:
    """Refuse a font file that is missing, unreadable or not a font file.

    Raises:
        ReportFontMissing: naming the path and what to do.
    """
    if path.suffix.lower() not in FONT_FILES:
        raise _missing(path, f"not a font file ({', '.join(FONT_FILES)})")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _missing(path, exc.strerror or "cannot be read") from None


def subset_truetype(path: Path, text: Iterable[str]) -> bytes:
    """The font at ``path``, cut to the characters of ``text``, with TrueType outlines.

    Args:
        path: a TrueType/OpenType font or collection (its Simplified Chinese face).
        text: every string the document will draw.

    Returns:
        A TrueType font file (``.ttf`` bytes).

    Raises:
        ReportFontMissing: the file is missing or is not a usable font.
    """
    from fontTools import subset

    index = face_index(path)
    chars = set("".join(text)) | {chr(c) for c in range(0x20, 0x7F)}
    options = subset.Options()
    options.font_number = index
    options.layout_features = []  # no shaping: CJK and Latin text are drawn as they come
    options.name_IDs = ["*"]
    options.notdef_outline = True
    with path.open("rb") as fh:
        try:
            font = subset.load_font(fh, options)
        except Exception as exc:  # a damaged or foreign file
            raise _missing(path, f"cannot be loaded ({exc})") from exc
        subsetter = subset.Subsetter(options)
        subsetter.populate(text="".join(sorted(chars)))
        subsetter.subset(font)
        if "glyf" not in font:
            _to_truetype_outlines(font)
        out = io.BytesIO()
        font.save(out)
        return out.getvalue()


def _to_truetype_outlines(font: TTFont) -> None:
    """Replace a CFF font's cubic outlines by quadratic TrueType ones, in place."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        # PostScript outlines run counter-clockwise, TrueType ones clockwise.
        glyphs[name].draw(Cu2QuPen(pen, MAX_CURVE_ERROR, reverse_direction=True))
        glyf[name] = pen.glyph()
        glyf[name].recalcBounds(glyf)
    font["glyf"] = glyf
    font["loca"] = newTable("loca")
    for tag in ("CFF ", "CFF2", "VORG"):
        if tag in font:
            del font[tag]
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["head"].indexToLocFormat = 0
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names (a CID font has none worth keeping)
    font.sfntVersion = "\x00\x01\x00\x00"
    font.recalcBBoxes = True  # maxp's point and contour counts are worked out on save


def _family(face: TTFont) -> str:
    name = face["name"].getDebugName(4) or face["name"].getDebugName(1) or ""
    return str(name)


def _missing(path: Path, why: str) -> ReportFontMissing:
    return ReportFontMissing(
        f"the CJK font for consultation reports is unusable: {path}: {why}; "
        "install Debian's fonts-noto-cjk or set report_font to a CJK .ttc/.otf/.ttf file"
    )
