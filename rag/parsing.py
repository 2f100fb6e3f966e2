"""Documents (plain text, Markdown, HTML, PDF) -> title + sections of plain text under headings."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from rag.errors import InvalidDocument

FORMATS = ("text", "markdown", "html", "pdf")

_EXTENSIONS = {
    ".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
    ".mdx": "markdown", ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf",
}
_MEDIA_TYPES = {
    "text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown",
    "text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf",
}


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (outermost heading first)."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None  # 1-based, PDFs only


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)
    format: str = "text"

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


def detect_format(content: bytes | str, filename: str | None, content_type: str | None) -> str:
    """Media type first, then extension, then a sniff of the first bytes."""
    if content_type:
        media = content_type.split(";")[0].strip().lower()
        if media in _MEDIA_TYPES:
            return _MEDIA_TYPES[media]
    if filename:
        fmt = _EXTENSIONS.get(PurePath(filename).suffix.lower())
        if fmt:
            return fmt
    head = content[:1024] if isinstance(content, bytes) else content[:1024].encode()
    if head.lstrip().startswith(b"%PDF"):
        return "pdf"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<body" in lowered:
        return "html"
    if re.match(rb"#{1,6} \S", head.lstrip()):  # opens with an ATX heading
        return "markdown"
    return "text"


def parse_document(
    content: bytes | str,
    filename: str | None = None,
    content_type: str | None = None,
    title: str | None = None,
) -> ParsedDocument:
    """Parse `content`; `title` overrides the one found in the document."""
    fmt = detect_format(content, filename, content_type)
    fallback = PurePath(filename).stem if filename else ""
    if fmt == "pdf":
        if isinstance(content, str):
            raise InvalidDocument("a PDF must be given as bytes")
        doc = _parse_pdf(content, fallback)
    else:
        text = content if isinstance(content, str) else _decode(content)
        if fmt == "html":
            doc = _parse_html(text, fallback)
        elif fmt == "markdown":
            doc = _parse_markdown(text, fallback)
        else:
            doc = _parse_text(text, fallback)
    if title:
        doc = ParsedDocument(title.strip(), doc.sections, doc.format)
    if not any(s.text.strip() for s in doc.sections):
        raise InvalidDocument(f"no text found in {filename or 'document'} ({fmt})")
    return doc


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:4096]:
        raise InvalidDocument("binary content is not a supported document type")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _clean(text: str) -> str:
    """Collapse runs of spaces inside lines and of blank lines between paragraphs."""
    lines = [re.sub(r"[ \t\f\v\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# -- plain text -------------------------------------------------------------------------


def _parse_text(text: str, fallback: str) -> ParsedDocument:
    text = _clean(text)
    return ParsedDocument(fallback, [Section(text)] if text else [], "text")


# -- Markdown ---------------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def _parse_markdown(text: str, fallback: str) -> ParsedDocument:
    lines = text.replace("\r\n", "\n").split("\n")
    title = ""
    if lines and lines[0].strip() == "---":  # YAML front matter: keep only its title
        for end in range(1, len(lines)):
            if lines[end].strip() in ("---", "..."):
                for line in lines[1:end]:
                    if line.lower().startswith("title:"):
                        title = line.split(":", 1)[1].strip().strip("\"'")
                lines = lines[end + 1 :]
                break
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        chunk = _clean(_LINK.sub(r"\1", "\n".join(body)))
        if chunk:
            sections.append(Section(chunk, tuple(h for _, h in stack)))
        body.clear()

    def open_heading(level: int, heading: str) -> None:
        nonlocal title
        flush()
        heading = _LINK.sub(r"\1", heading).strip()
        while stack and stack[-1][0] >= level:
            stack.pop()
        if level == 1 and not title:
            title = heading
            return  # the document title is context for every chunk already
        stack.append((level, heading))

    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
            body.append(line)
        elif not in_fence and (m := _ATX.match(line)):
            open_heading(len(m.group(1)), m.group(2))
        elif (
            not in_fence and line.strip() and i + 1 < len(lines)
            and re.fullmatch(r"\s*(=+|-+)\s*", lines[i + 1]) and not _is_list_or_table_row(line)
        ):
            open_heading(1 if "=" in lines[i + 1] else 2, line.strip())
            i += 1
        else:
            body.append(line)
        i += 1
    flush()
    return ParsedDocument(title or fallback, sections, "markdown")


def _is_list_or_table_row(line: str) -> bool:
    """A line followed by `---` is a setext heading unless it is a list item or a table row."""
    return bool(re.match(r"\s*([-*+]|\d+\.)\s|\s*\|", line))


# -- HTML -------------------------------------------------------------------------------

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "nav", "head", "button")
_BLOCK_TAGS = (
    "p", "div", "section", "article", "main", "header", "footer", "aside", "li", "ul", "ol",
    "pre", "table", "tr", "blockquote", "dd", "dt", "dl", "figure", "figcaption", "caption",
    "form", "fieldset", "address", "hr",
)
_HEADING = "\x00H"


def _parse_html(text: str, fallback: str) -> ParsedDocument:
    from bs4 import BeautifulSoup  # imported here: parsing HTML is the only user

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(re.compile(r"^h[1-6]$")):
        heading = " ".join(tag.get_text(" ").split())
        tag.replace_with(f"\n{_HEADING}{tag.name[1]} {heading}\n" if heading else "\n")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(["td", "th"]):
        tag.append(" \t ")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.append("\n\n")
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []

    def flush() -> None:
        chunk = _clean("\n".join(body))
        if chunk:
            sections.append(Section(chunk, tuple(h for _, h in stack)))
        body.clear()

    for line in soup.get_text().split("\n"):
        if line.startswith(_HEADING):
            flush()
            level, heading = int(line[2]), line[4:].strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            if level == 1 and not title:
                title = heading
            elif heading != title:
                stack.append((level, heading))
        else:
            body.append(line)
    flush()
    return ParsedDocument(title or fallback, sections, "html")


# -- PDF --------------------------------------------------------------------------------


def _parse_pdf(data: bytes, fallback: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidDocument("encrypted PDFs are not supported")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title or "") if reader.metadata else ""
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise InvalidDocument(f"unreadable PDF: {exc}") from exc
    sections = [
        Section(text, (), number)
        for number, raw in enumerate(pages, start=1)
        if (text := _clean(raw))
    ]
    title = str(meta_title).strip()
    if not title and sections:  # the first line of a PDF is usually its title
        first = sections[0].text.split("\n", 1)[0].strip()
        title = first if len(first) <= 120 else ""
    return ParsedDocument(title or fallback, sections, "pdf")
