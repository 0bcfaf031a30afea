"""ANSI SGR escape sequences (colours, bold, italic, underline) turned into escaped HTML.

Console lines of services carry terminal colours; the console page shows them as
``<span style="color:...">`` runs. Everything else (text, other escape sequences) is escaped or
dropped, so a line can never inject markup into the page.
"""

from __future__ import annotations

import html
import re

import attrs

#: The 16 standard colours (xterm's palette): 0-7 normal, 8-15 bright.
PALETTE_16 = (
    "#000000",
    "#cd3131",
    "#0dbc79",
    "#e5e510",
    "#2472c8",
    "#bc3fbc",
    "#11a8cd",
    "#e5e5e5",
    "#666666",
    "#f14c4c",
    "#23d18b",
    "#f5f543",
    "#3b8eea",
    "#d670d6",
    "#29b8db",
    "#ffffff",
)

#: CSI sequences (SGR and others), OSC sequences (titles, hyperlinks) and lone escapes.
_ESCAPES = re.compile(
    r"\x1b\[(?P<params>[0-9;:?]*)(?P<final>[@-~])"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-Z\\-_]?"  # other two-byte escapes, or a lone ESC
)
#: Control characters (other than tab) a page should not show.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@attrs.define
class _Style:
    """The SGR state at one point of a line."""

    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def reset(self) -> None:
        """Back to the terminal's default (SGR 0)."""
        self.fg = self.bg = None
        self.bold = self.dim = self.italic = self.underline = False

    def css(self) -> str:
        """The inline style of this state ("" when plain)."""
        parts = []
        if self.fg:
            parts.append(f"color:{self.fg}")
        if self.bg:
            parts.append(f"background-color:{self.bg}")
        if self.bold:
            parts.append("font-weight:bold")
        if self.dim:
            parts.append("opacity:0.7")
        if self.italic:
            parts.append("font-style:italic")
        if self.underline:
            parts.append("text-decoration:underline")
        return ";".join(parts)


def color_256(index: int) -> str:
    """The CSS colour of xterm's 256-colour palette entry ``index`` (0-255)."""
    if index < 16:
        return PALETTE_16[index]
    if index < 232:
        index -= 16
        steps = (0, 95, 135, 175, 215, 255)
        r, g, b = steps[index // 36], steps[(index // 6) % 6], steps[index % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    level = 8 + (index - 232) * 10
    return f"#{level:02x}{level:02x}{level:02x}"


def _extended(codes: list[int], i: int) -> tuple[str | None, int]:
    """Read a 38/48 colour (``5;n`` or ``2;r;g;b``) after position ``i``; return the colour
    (None when malformed) and the position of the last code consumed."""
    if i + 1 < len(codes) and codes[i + 1] == 5 and i + 2 < len(codes):
        n = codes[i + 2]
        return (color_256(n) if 0 <= n <= 255 else None), i + 2
    if i + 1 < len(codes) and codes[i + 1] == 2 and i + 4 < len(codes):
        r, g, b = codes[i + 2 : i + 5]
        if all(0 <= c <= 255 for c in (r, g, b)):
            return f"#{r:02x}{g:02x}{b:02x}", i + 4
        return None, i + 4
    return None, len(codes)


def _apply(style: _Style, params: str) -> None:
    """Update ``style`` with one SGR sequence's parameters."""
    try:
        codes = [int(p) if p else 0 for p in params.replace(":", ";").split(";")]
    except ValueError:
        return
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style.reset()
        elif code == 1:
            style.bold = True
        elif code == 2:
            style.dim = True
        elif code == 3:
            style.italic = True
        elif code == 4:
            style.underline = True
        elif code == 22:
            style.bold = style.dim = False
        elif code == 23:
            style.italic = False
        elif code == 24:
            style.underline = False
        elif 30 <= code <= 37:
            style.fg = PALETTE_16[code - 30]
        elif 90 <= code <= 97:
            style.fg = PALETTE_16[code - 90 + 8]
        elif 40 <= code <= 47:
            style.bg = PALETTE_16[code - 40]
        elif 100 <= code <= 107:
            style.bg = PALETTE_16[code - 100 + 8]
        elif code == 39:
            style.fg = None
        elif code == 49:
            style.bg = None
        elif code in (38, 48):
            colour, i = _extended(codes, i)
            if colour is not None:
                if code == 38:
                    style.fg = colour
                else:
                    style.bg = colour
        i += 1


def to_html(text: str) -> str:
    """``text`` escaped for HTML, its SGR colours as ``<span style=...>`` runs; other escape
    sequences and control characters are removed."""
    if "\x1b" not in text:
        return html.escape(_CONTROLS.sub("", text), quote=False)
    out: list[str] = []
    style = _Style()
    pos = 0

    def emit(chunk: str) -> None:
        chunk = _CONTROLS.sub("", chunk)
        if not chunk:
            return
        css = style.css()
        escaped = html.escape(chunk, quote=False)
        out.append(f'<span style="{css}">{escaped}</span>' if css else escaped)

    for match in _ESCAPES.finditer(text):
        emit(text[pos : match.start()])
        pos = match.end()
        if match.group("final") == "m":
            _apply(style, match.group("params") or "0")
    emit(text[pos:])
    return "".join(out)


def strip(text: str) -> str:
    """``text`` without any escape sequences or control characters (for plain-text views)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
