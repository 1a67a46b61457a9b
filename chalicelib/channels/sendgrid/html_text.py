"""HTML to text: the readable plain text of an HTML email body, in linear time on any input."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
# How many line breaks a tag's start and end put around its content: paragraphs stand apart by a
# blank line, other blocks just start on their own line.
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"})
_BLOCK_TAGS = frozenset(
    {"div", "li", "tr", "ul", "ol", "dl", "dt", "dd", "pre", "hr", "section", "article", "header", "footer"}
)
_CELL_TAGS = frozenset({"td", "th"})


class _HtmlTextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._skipping = 0
        self._pending_breaks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping = 0  # an unclosed <head> must not swallow the body
        elif tag in _SKIPPED_TAGS:
            self._skipping += 1
        else:
            self._break_for(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIPPED_TAGS:
            self._break_for(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag != "br":
            self._break_for(tag)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        collapsed = re.sub(r"\s+", " ", data)
        if not collapsed.strip():
            # Indentation between tags is not content, unless it separates two words.
            if not self._pending_breaks and self._chunks:
                self._chunks.append(" ")
            return
        if self._pending_breaks and self._chunks:
            self._chunks.append("\n" * self._pending_breaks)
        self._pending_breaks = 0
        self._chunks.append(collapsed)

    def _break_for(self, tag: str) -> None:
        if tag == "br":
            self._pending_breaks += 1  # consecutive <br> make blank lines, as in a browser
        elif tag in _PARAGRAPH_TAGS:
            self._pending_breaks = max(self._pending_breaks, 2)
        elif tag in _BLOCK_TAGS:
            self._pending_breaks = max(self._pending_breaks, 1)
        elif tag in _CELL_TAGS and self._chunks:
            self._chunks.append(" ")

    def text(self) -> str:
        return "".join(self._chunks)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML email body."""
    if not html.strip():
        return ""
    extractor = _HtmlTextExtractor()
    try:
        extractor.feed(_defuse_markup(html))
        extractor.close()
        text = extractor.text()
    except Exception:
        # html.parser still asserts on some malformed declarations; a crude strip is enough.
        text = unescape(re.sub(r"<[^>]*>", " ", html))
    return _tidy_lines(text)


def _defuse_markup(html: str) -> str:
    """The markup html.parser reads in linear time, with the same visible text.

    For every "<" it cannot close, html.parser (as shipped with Python 3.11) searches to the end
    of the document again, so 400 kB of "<!--" takes minutes. Comments, declarations and
    processing instructions show no text and are removed; a "<" that no ">" closes before the
    next "<" is text and is escaped.
    """
    return _UNCLOSED_OR_DECLARATION.sub(_defused_construct, _without_comments(html))


_UNCLOSED_OR_DECLARATION = re.compile(r"<(?:([!?][^<>]*)>|(?=[^<>]*(?:<|$)))")


def _defused_construct(match: re.Match[str]) -> str:
    return "" if match.group(1) is not None else "&lt;"


def _without_comments(html: str) -> str:
    kept: list[str] = []
    position = 0
    while (start := html.find("<!--", position)) >= 0:
        kept.append(html[position:start])
        end = html.find("-->", start + 4)
        if end < 0:
            return "".join(kept)  # an unclosed comment hides the rest of the document
        position = end + 3
    kept.append(html[position:])
    return "".join(kept)


def _tidy_lines(text: str) -> str:
    lines = [re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
