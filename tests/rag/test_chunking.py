from __future__ import annotations

import itertools

import pytest

from rag import Chunker, ParsedDocument, Section, parse_document


def sentences(n: int, topic: str = "wing") -> str:
    return " ".join(f"Sentence {i} is about the {topic} number {i}." for i in range(n))


def test_chunks_fit_the_budget_including_the_context_line(encoding) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(encoding, chunk_tokens=60, overlap_tokens=12)
    doc = ParsedDocument("Aerofoil Handbook", [Section(sentences(40), ("Lift", "Stall"))])
    chunks = chunker.chunk(doc)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.context == "Aerofoil Handbook > Lift > Stall"
        assert chunk.indexed_text == f"{chunk.context}\n{chunk.text}"
        assert len(encoding.encode_ordinary(chunk.indexed_text)) <= 60
        assert chunk.n_tokens == len(encoding.encode_ordinary(chunk.text))
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_consecutive_chunks_overlap_by_whole_sentences_and_lose_nothing(encoding) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(encoding, chunk_tokens=60, overlap_tokens=15)
    text = sentences(30)
    chunks = chunker.chunk(ParsedDocument("T", [Section(text)]))
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.text.rsplit(". ", 1)[-1]
        assert after.text.startswith(last_sentence.rstrip(".")), (before.text, after.text)
        assert last_sentence.rstrip(".") + "." in after.text
    covered = " ".join(c.text for c in chunks)
    for i in range(30):
        assert f"Sentence {i} is about the wing number {i}." in covered


def test_no_overlap_when_disabled(encoding) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(encoding, chunk_tokens=50, overlap_tokens=0)
    chunks = chunker.chunk(ParsedDocument("", [Section(sentences(20))]))
    joined = " ".join(c.text for c in chunks)
    assert joined == sentences(20)


def test_sections_are_chunked_separately_with_their_own_headings(encoding) -> None:  # type: ignore[no-untyped-def]
    md = "# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n### Linux\n\nUse apt.\n"
    chunks = Chunker(encoding).chunk(parse_document(md, filename="g.md"))
    assert [(c.context, c.text) for c in chunks] == [
        ("Guide", "Intro."),
        ("Guide > Install", "Run it."),
        ("Guide > Install > Linux", "Use apt."),
    ]


def test_a_sentence_longer_than_a_chunk_is_cut_into_overlapping_windows(encoding) -> None:  # type: ignore[no-untyped-def]
    words = " ".join(f"w{i}" for i in range(300))  # one "sentence", no punctuation
    chunker = Chunker(encoding, chunk_tokens=80, overlap_tokens=16)
    chunks = chunker.chunk(ParsedDocument("", [Section(words)]))
    assert len(chunks) > 3
    assert all(c.n_tokens <= 80 for c in chunks)
    first, second = chunks[0].text.split(), chunks[1].text.split()
    assert set(first[-3:]) <= set(second[:12])  # the next window starts inside the previous
    assert "w299" in chunks[-1].text


def test_line_breaks_inside_a_section_survive(encoding) -> None:  # type: ignore[no-untyped-def]
    chunks = Chunker(encoding).chunk(ParsedDocument("", [Section("- one\n- two\n- three")]))
    assert chunks[0].text == "- one\n- two\n- three"


def test_overlap_must_be_smaller_than_half_a_chunk(encoding) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        Chunker(encoding, chunk_tokens=40, overlap_tokens=20)
