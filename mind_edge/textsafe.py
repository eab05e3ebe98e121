"""Terminal-safe text: data read from files is never markup and never a control sequence.

Class names, file names, paths and every other string that comes from a bundle, a patch, a run
directory or the command line go through :func:`clean` before they reach a terminal:

* control characters (C0, DEL, C1: ESC/CSI/OSC sequences, BEL, backspace, carriage return,
  newline, tab), Unicode format characters (bidi overrides such as U+202E, zero-width
  characters) and line/paragraph separators are shown as visible escapes (``\\x1b``, ``\\n``,
  ``\\u202e``), so a name can neither move the cursor, set a hyperlink, hide text, nor forge a
  second line (``error: …``);
* :func:`markup` additionally escapes rich markup (``[bold]``, ``[link=…]``), for strings that are
  embedded into a markup template; :func:`text` returns a :class:`rich.text.Text`, which rich
  never parses as markup (the preferred form for table cells and titles);
* :func:`field_table` is the CLI's two-column field/value table, whose title goes through
  :func:`text` when given as a string.

Torch-free, numpy-free; rich is imported only inside :func:`markup`, :func:`text` and
:func:`field_table`.
"""

from __future__ import annotations

import unicodedata

__all__ = ["clean", "field_table", "markup", "text"]

_UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def clean(value: object, *, limit: int | None = None) -> str:
    """``str(value)`` on one line with every control/format character shown as an escape.

    ``limit`` cuts the result to that many characters (adding ``…``), for values that may be
    arbitrarily long.
    """
    s = value if isinstance(value, str) else str(value)
    if s.isprintable():  # fast path: no control, format or separator characters (space is printable)
        out = s
    else:
        out = "".join(
            _escape_char(ch)
            if (not ch.isprintable() and ch != " ") or unicodedata.category(ch) in _UNSAFE_CATEGORIES
            else ch
            for ch in s
        )
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + "…"
    return out


def markup(value: object, *, limit: int | None = None) -> str:
    """:func:`clean` + rich markup escaping: safe to embed in a rich markup string."""
    from rich.markup import escape  # noqa: PLC0415 - rich only inside functions (module docstring)

    return escape(clean(value, limit=limit))


def text(value: object, style: str = "", *, limit: int | None = None):
    """A :class:`rich.text.Text` of :func:`clean` ``(value)`` (never interpreted as markup)."""
    from rich.text import Text  # noqa: PLC0415 - rich only inside functions (module docstring)

    return Text(clean(value, limit=limit), style=style)


def field_table(title: object, *, justify_left: bool = True):
    """A headerless :class:`rich.table.Table` with a bold ``field`` column and a ``value`` column.

    A ``str`` title is data: it goes through :func:`text`, so it is never parsed as markup; a
    :class:`rich.text.Text` is used as given. ``justify_left=False`` keeps rich's centred title.
    """
    from rich.table import Table  # noqa: PLC0415 - rich only inside functions (module docstring)
    from rich.text import Text  # noqa: PLC0415

    table = Table(
        title=title if isinstance(title, Text) else text(title),
        title_justify="left" if justify_left else "center",  # "center" is rich's default
        show_header=False,
    )
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    return table
