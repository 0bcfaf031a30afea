"""ANSI SGR colours become escaped HTML spans; nothing in a console line can inject markup."""

from __future__ import annotations

from apphost_sdk.dashboard.ansi import color_256, strip, to_html


def test_plain_text_is_escaped() -> None:
    assert to_html("<script>alert('x') & \"y\"</script>") == (
        "&lt;script&gt;alert('x') &amp; \"y\"&lt;/script&gt;"
    )


def test_standard_and_bright_colours_and_reset() -> None:
    html = to_html("\x1b[31mred\x1b[0m plain \x1b[92mbright\x1b[39m done")
    assert html == (
        '<span style="color:#cd3131">red</span> plain '
        '<span style="color:#23d18b">bright</span> done'
    )


def test_bold_background_and_partial_resets() -> None:
    html = to_html("\x1b[1;44mA\x1b[22mB\x1b[49mC")
    assert html == (
        '<span style="background-color:#2472c8;font-weight:bold">A</span>'
        '<span style="background-color:#2472c8">B</span>C'
    )


def test_256_and_truecolor() -> None:
    assert to_html("\x1b[38;5;196mx") == '<span style="color:#ff0000">x</span>'
    assert to_html("\x1b[48;5;244mx") == '<span style="background-color:#808080">x</span>'
    assert to_html("\x1b[38;2;1;2;255mx") == '<span style="color:#0102ff">x</span>'
    assert color_256(16) == "#000000"
    assert color_256(231) == "#ffffff"
    assert color_256(9) == "#f14c4c"


def test_escaped_text_inside_colour_runs() -> None:
    assert (
        to_html("\x1b[33m<b>&</b>") == '<span style="color:#e5e510">&lt;b&gt;&amp;&lt;/b&gt;</span>'
    )


def test_other_escape_sequences_and_controls_are_dropped() -> None:
    text = "\x1b[2K\x1b]0;title\x07\x1b[1Gready\x08\x00!"
    assert to_html(text) == "ready!"
    assert strip("\x1b[31mred\x1b[0m\x1b[2J") == "red"


def test_malformed_sequences_do_not_break_the_line() -> None:
    assert to_html("\x1b[38;5mx\x1b[38;2;300;0;0my\x1b[99mz") == "xyz"
    assert to_html("trailing escape \x1b") == "trailing escape "
