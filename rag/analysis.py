"""Lexical analysis for BM25: lowercase word tokens, stopwords out, Snowball (Porter2) stems."""

from __future__ import annotations

import re
import unicodedata

import snowballstemmer

# Lucene's English stopwords plus the question words that fill natural-language queries
# ("what", "how", "which"...). They carry no topical signal and only add scoring noise.
_STOPWORD_TEXT = """
    a an and are as at be but by for if in into is it no not of on or such that the their then
    there these they this to was will with what which who whom whose when where why how do does
    did done can could should would may might must shall has have had having been being were am
    i me my we our you your he him his she her its them those from than so too very any all
    also some other about over under up down out off again further once here both each few more
    most own same only just s t don now etc e g ie eg
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"[^\W_]+")


class Analyzer:
    """Turns text into index terms. Stems are memoised per instance (vocabularies are small)."""

    def __init__(self, stem: bool = True, stopwords: frozenset[str] = STOPWORDS) -> None:
        self.stem = stem
        self.stopwords = stopwords
        self._stemmer = snowballstemmer.stemmer("english") if stem else None
        self._memo: dict[str, str] = {}

    def terms(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        out: list[str] = []
        memo = self._memo
        for word in _WORD.findall(text):
            if word in self.stopwords:
                continue
            term = memo.get(word)
            if term is None:
                term = self._stem(word)
                if len(memo) < 500_000:
                    memo[word] = term
            out.append(term)
        return out

    def _stem(self, word: str) -> str:
        if self._stemmer is None or word.isdigit():
            return word
        return str(self._stemmer.stemWord(word))
