"""Text people type, kept to one line of plain text wherever it is shown.

    one_line("Opera\n\n  floor")          # "Opera floor": what a title is stored as
    CONTROL.search("Opera \u202e99.01$")  # found: a title to refuse
    plain_line("Opera\n\u202e99.01$")     # "Opera 99.01$": stored text put into an email
    shows_something("\u200b\u3164")      # False: nothing a reader would see

Whitespace is what str.split() finds (line breaks, tabs, the Unicode separators), so no
line of its own survives one_line. CONTROL is what remains that no title needs: control
characters, and the bidirectional embeddings, overrides and isolates, which reorder how
the text around them is shown (a title could display as another price).
"""

from __future__ import annotations

import re
import unicodedata

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What shows nothing by its category: separators (spaces), controls and format characters
# (zero-width joiners, marks of direction), and marks, which only change the character
# before them. A character this Python's Unicode does not know (a newer emoji) or a
# private-use one may show: it counts as something.
_BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Mc", "Me"})
# Characters of other categories that show as blank space (Hangul fillers, the Braille
# blank, the musical null notehead).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\U0001d159")


def one_line(text: str) -> str:
    """`text` trimmed, each run of whitespace one space."""
    return " ".join(text.split())


def plain_line(text: str) -> str:
    """`text` on one line without CONTROL characters: for text stored before it was
    refused, shown where it could otherwise add lines or reorder what is around it."""
    # Line breaks and tabs are control characters too: made spaces first, not dropped
    # (which would join the words around them), then the spaces a dropped one left.
    return one_line(CONTROL.sub("", one_line(text)))


def shows_something(text: str) -> bool:
    """Whether `text` has a character a reader sees: not only spaces, joiners, marks of
    direction, combining marks and blank-looking letters."""
    return any(
        unicodedata.category(c) not in _BLANK_CATEGORIES and c not in _BLANK_CHARACTERS
        for c in text
    )
