"""The one sanitiser for text that came from outside and is about to be shown or logged.

Owns :func:`sanitize` (and :func:`sanitize_line`): every character that can make a
terminal or a log viewer show something other than the text itself is replaced by a
visible escape: C0 control characters (``\\x1b`` ESC, which starts every CSI/OSC sequence,
``\\r``, ``\\x07`` BEL, ...), DEL, C1 (``\\x9b`` is a one-byte CSI), bidi embeddings,
overrides, isolates and marks (``\\u202e``...), and the Unicode line and paragraph
separators. Newline and tab stay (multi-line command output is legitimate) unless the
caller asks for one line. The escaped text is plain printable text, so sanitising twice
changes nothing.

Node output, SSH banners and errors, API object fields, finding messages built from facts,
step stderr, ``status`` messages and progress lines all pass through it at the output
edges (the CLI's streams, the logging formatter, the progress reporter, the transcripts).
:data:`HIDDEN` is also the character class the playbook loader refuses.

Must not: do I/O or decide where text goes. Pure standard library.
"""

from __future__ import annotations

import re

# Characters that can make a text render differently from what it is.
HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_HIDDEN_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(m: re.Match[str]) -> str:
    cp = ord(m.group())
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}"


def sanitize(text: str) -> str:
    """``text`` with every hidden character (see the module doc) shown as ``\\xNN`` or
    ``\\uNNNN``; newlines and tabs kept."""
    if text.isprintable() or not _HIDDEN_KEEP_LINES.search(text):
        return text
    return _HIDDEN_KEEP_LINES.sub(_escape, text)


def sanitize_line(text: str) -> str:
    """Like :func:`sanitize`, and newlines and tabs escaped too: always one line."""
    return HIDDEN.sub(_escape, text)
