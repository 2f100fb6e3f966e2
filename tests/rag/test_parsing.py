from __future__ import annotations

import pytest

from rag import InvalidDocument, parse_document
from rag.parsing import detect_format
from tests.rag.conftest import make_pdf

HTML = """<!doctype html>
<html><head><title>Wing Handbook</title><style>p { color: red }</style>
<script>var secret = "do not index";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Wing Handbook</h1>
<p>Lift grows with the <b>angle of attack</b> until the wing stalls.<br>Then it drops.</p>
<h2>Flaps</h2>
<p>Flaps raise the lift coefficient.</p>
<ul><li>Plain flaps</li><li>Slotted flaps</li></ul>
<h3>Slotted</h3>
<p>A slot re-energises the boundary layer.</p>
<h2>Stall</h2>
<table><tr><td>alpha</td><td>15 deg</td></tr></table>
</body></html>"""


def test_html_sections_follow_headings_and_drop_code_and_navigation() -> None:
    doc = parse_document(HTML.encode(), filename="handbook.html")
    assert doc.format == "html"
    assert doc.title == "Wing Handbook"
    by_heading = {s.headings: s.text for s in doc.sections}
    assert set(by_heading) == {(), ("Flaps",), ("Flaps", "Slotted"), ("Stall",)}
    # inline tags do not break the sentence; <br> does
    assert (
        by_heading[()]
    ) == "Lift grows with the angle of attack until the wing stalls.\nThen it drops."
    assert "Plain flaps" in by_heading[("Flaps",)] and "Slotted flaps" in by_heading[("Flaps",)]
    assert "boundary layer" in by_heading[("Flaps", "Slotted")]
    assert "15 deg" in by_heading[("Stall",)]
    assert "secret" not in doc.text and "color" not in doc.text and "About" not in doc.text


def test_html_without_title_uses_first_h1() -> None:
    doc = parse_document("<html><body><h1>Engines</h1><p>Jets burn fuel.</p></body></html>")
    assert doc.format == "html"
    assert doc.title == "Engines"
    assert [s.text for s in doc.sections] == ["Jets burn fuel."]


MARKDOWN = """---
title: Deploy guide
author: ops
---
Intro text with a [link](https://example.com) in it.

## Install
Run the installer.

```bash
# not a heading
make install
```

Configure
---------
Edit the file.

### Secrets
Keep them safe.

- a list item
---
"""


def test_markdown_heading_paths_front_matter_and_code_fences() -> None:
    doc = parse_document(MARKDOWN, filename="guide.md")
    assert doc.format == "markdown"
    assert doc.title == "Deploy guide"
    sections = {s.headings: s.text for s in doc.sections}
    assert sections[()] == "Intro text with a link in it."
    assert "# not a heading" in sections[("Install",)]
    assert sections[("Configure",)] == "Edit the file."
    assert "Keep them safe." in sections[("Configure", "Secrets")]
    assert "- a list item" in sections[("Configure", "Secrets")]
    assert "author" not in doc.text


def test_markdown_first_h1_is_the_title_not_a_heading() -> None:
    doc = parse_document("# Title\n\nBody.\n\n## Part\n\nMore.", filename="x.md")
    assert doc.title == "Title"
    assert [(s.headings, s.text) for s in doc.sections] == [((), "Body."), (("Part",), "More.")]


def test_pdf_pages_become_sections_with_page_numbers() -> None:
    data = make_pdf(["Wing loading basics.", "Second page on flutter."], title="Aero Notes")
    doc = parse_document(data, filename="notes.pdf")
    assert doc.format == "pdf"
    assert doc.title == "Aero Notes"
    assert [(s.page, s.text) for s in doc.sections] == [
        (1, "Wing loading basics."),
        (2, "Second page on flutter."),
    ]


def test_pdf_without_metadata_title_takes_its_first_line() -> None:
    doc = parse_document(make_pdf(["Flutter Report", "Body."]), content_type="application/pdf")
    assert doc.title == "Flutter Report"


def test_plain_text_title_comes_from_the_caller_or_filename() -> None:
    assert parse_document(b"Some text.", filename="notes.txt").title == "notes"
    assert parse_document("Some text.", title="Given").title == "Given"
    assert parse_document("caf\xe9".encode("cp1252")).text == "caf\xe9"


@pytest.mark.parametrize(
    ("content", "filename", "content_type", "expected"),
    [
        (b"%PDF-1.4 ...", None, None, "pdf"),
        (b"<!DOCTYPE html><html></html>", None, None, "html"),
        (b"# x", "a.md", None, "markdown"),
        (b"# x", "a.bin", "text/markdown; charset=utf-8", "markdown"),
        (b"plain", "a.unknown", None, "text"),
        (b"\n# Title\n\ntext", None, None, "markdown"),
        (b"#hashtag text", None, None, "text"),
    ],
)
def test_detect_format(content: bytes, filename: str | None, content_type: str | None,
                       expected: str) -> None:
    assert detect_format(content, filename, content_type) == expected


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (b"", "empty.txt"),
        (b"   \n\n ", "blank.md"),
        (b"\x00\x01\x02binary\x00", "blob.bin"),
        (b"%PDF-1.4 this is not really a pdf", "broken.pdf"),
        (b"<html><body><script>x()</script></body></html>", "empty.html"),
    ],
)
def test_unusable_documents_are_rejected(content: bytes, filename: str) -> None:
    with pytest.raises(InvalidDocument):
        parse_document(content, filename=filename)
