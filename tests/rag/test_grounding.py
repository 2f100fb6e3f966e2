from __future__ import annotations

from rag import Hit, build_grounding, citations_header, insert_grounding


def hit(n: int, text: str, tokens: int = 10, page: int | None = None) -> Hit:
    return Hit(
        chunk_id=f"doc{n}#0-abc", doc_id=f"doc{n}", text=text, title=f"Title {n}",
        context=f"Title {n} > Part", score=1.0 / n, position=0, n_tokens=tokens,
        filename=f"f{n}.md", page=page,
    )


def test_message_numbers_sources_and_asks_for_citations() -> None:
    hits = [hit(1, "Refunds take 5 days."), hit(2, "Refunds need a receipt.", page=3)]
    message, citations = build_grounding(hits)
    assert message["role"] == "system"
    content = message["content"]
    assert "only the numbered sources" in content and "[1]" in content
    assert "[1] Title 1 > Part\nRefunds take 5 days." in content
    assert "[2] Title 2 > Part (page 3)\nRefunds need a receipt." in content
    assert content.index("[1] Title 1") < content.index("[2] Title 2")
    assert [c["index"] for c in citations] == [1, 2]
    assert citations[1] == {
        "index": 2, "doc_id": "doc2", "chunk_id": "doc2#0-abc", "title": "Title 2",
        "filename": "f2.md", "page": 3, "score": 0.5, "snippet": "Refunds need a receipt.",
    }


def test_token_budget_drops_the_lowest_ranked_sources() -> None:
    hits = [hit(i, f"text {i}", tokens=100) for i in range(1, 6)]
    message, citations = build_grounding(hits, max_tokens=250)
    assert [c["doc_id"] for c in citations] == ["doc1", "doc2"]
    assert "text 3" not in message["content"]
    _, one = build_grounding([hit(1, "big", tokens=5000)], max_tokens=100)
    assert len(one) == 1  # the best source is kept even when it alone is over budget


def test_no_hits_says_so() -> None:
    message, citations = build_grounding([])
    assert citations == [] and "no relevant sources" in message["content"]


def test_snippets_are_cut_at_a_word() -> None:
    _, citations = build_grounding([hit(1, "word " * 100)], snippet_chars=22)
    assert citations[0]["snippet"] == "word word word word…"


def test_inserted_before_the_last_user_turn_without_touching_the_input() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "How do refunds work?"},
    ]
    grounding, _ = build_grounding([hit(1, "Refunds take 5 days.")])
    out = insert_grounding(messages, grounding)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "system", "user"]
    assert out[3] == grounding and out[4]["content"] == "How do refunds work?"
    assert len(messages) == 4  # the caller's list is unchanged


def test_system_position_merges_into_the_leading_system_message() -> None:
    grounding, _ = build_grounding([hit(1, "Refunds take 5 days.")])
    out = insert_grounding(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}],
        grounding, position="system",
    )
    assert len(out) == 2 and out[0]["content"].startswith("Be brief.\n\n")
    assert out[0]["content"].endswith(grounding["content"])
    parts = insert_grounding(
        [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
         {"role": "user", "content": "Q"}],
        grounding, position="system",
    )
    assert parts[0]["content"][-1] == {"type": "text", "text": grounding["content"]}
    bare = insert_grounding([{"role": "user", "content": "Q"}], grounding, position="system")
    assert bare[0] == grounding and bare[1]["role"] == "user"


def test_citations_header_is_ascii() -> None:
    _, citations = build_grounding([hit(1, "a"), hit(2, "b")])
    citations[1]["chunk_id"] = "résumé#0-ff"
    value = citations_header(citations)
    assert value == "1=doc1#0-abc,2=r%C3%A9sum%C3%A9#0-ff"
    value.encode("ascii")
