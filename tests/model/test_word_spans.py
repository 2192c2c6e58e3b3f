"""``Tokenizer.word_spans``: exactly the words of ``Tokenizer.words``, each with the characters
of the caller's text it came from (what the HTTP front end's ``text_offset`` reports), on the
shared corpora and on inputs NLTK splits, merges or rewrites; and ``TextAssembler``, which
turns generated words into text that continues a prompt."""

from __future__ import annotations

import pytest

from rnnlm.model.text import (
    TextAssembler,
    Tokenizer,
    WordSpan,
    detokenize,
    detokenize_with_offsets,
)
from tests.conftest import shared_file

QUOTES = {"``", "''"}
QUOTE_SOURCES = {'"', "''", "``"}
CORPORA = [
    "tinyshakespeare/input.txt",
    "wikitext-2/valid.txt",
    "reddit/reddit-comments-2015-08-sample.csv",
]
ODD = [
    "",
    "   ",
    "The  cat\t\tsat \n on   the mat .",
    'He said "hi" and left.',
    '"Quoted at the start," she said, "and at the end"',
    "''two single quotes'' and ``backticks`` and ```three```",
    "x \"\" y '' z",
    "“Curly” ‘quotes’ «guillemets» „low“",
    "Don't, can't, won't; cannot gonna 'tis y'all",
    "naïve café — en–dash … ellipsis... and -- double",
    "İstanbul ǅemal ﬁne ß straße",  # case folding that changes lengths
    "e\u0301 combining, \u00a0non-breaking\u2003em space, \u200bzero width",
    "emoji 👍🏽 and 中文字符 and عربى",
    "<unk> and <s> and </s> and a<b>c and < unk >",
    "price: $3.88 (roughly 3,36 euros) [sic] {x} <y>",
    "end with a period. Then more text.",
    'trailing quote."',
    "'single' quotes 'n' stuff' o'clock",
    "@user #tag 50% a&b a*b a;b",
]


def modes() -> list[Tokenizer]:
    return [
        Tokenizer.fit("", words=words, sentences="line", lowercase=lowercase)
        for words in ("nltk", "whitespace")
        for lowercase in (True, False)
    ]


def span_problems(tokenizer: Tokenizer, text: str) -> list[str]:
    """What is wrong with the spans of ``text``: they must give exactly ``words(text)``,
    in order, not overlapping, each the word's own characters (a quote NLTK rewrote: any
    quote), and leave out nothing but whitespace."""
    spans = tokenizer.word_spans(text)
    words = tokenizer.words(text)
    if [s.word for s in spans] != words:
        return [f"words differ: {[s.word for s in spans]} != {words}"]
    problems, pos = [], 0
    for span in spans:
        gap, source = text[pos : span.start], text[span.start : span.end]
        if span.start < pos or span.end <= span.start or span.end > len(text):
            problems.append(f"{span} is out of order or empty (text so far ends at {pos})")
        if gap.strip():
            problems.append(f"{gap!r} before {span} is not whitespace")
        # words() glues "< unk >" into "<unk>" when the sentence has an "<unk>" too: the
        # word then spans its pieces and the spaces between them.
        glued = "".join(source.split()) if span.word.startswith("<") else source
        matches = tokenizer.normalize([glued]) == [span.word] or (
            span.word in QUOTES and source in QUOTE_SOURCES
        )
        if not matches:
            problems.append(f"{span} spans {source!r}")
        pos = span.end
    if text[pos:].strip():
        problems.append(f"{text[pos:]!r} after the last word is not whitespace")
    return problems


@pytest.mark.parametrize("tokenizer", modes(), ids=lambda t: f"{t.words_mode}-{t.lowercase}")
@pytest.mark.parametrize("text", ODD)
def test_odd_inputs(tokenizer, text):
    assert span_problems(tokenizer, text) == []


@pytest.mark.parametrize("relative", CORPORA)
def test_every_line_of_the_corpora(relative):
    text = shared_file(relative).read_text(encoding="utf-8")[:150_000]  # its start: seconds in all
    lines = text.splitlines()
    for tokenizer in modes()[::2]:  # both word modes, lowercased
        bad = {line: p for line in lines if (p := span_problems(tokenizer, line))}
        assert not bad, list(bad.items())[:3]


def test_rewritten_quotes_point_at_the_original_characters():
    tokenizer = modes()[1]  # nltk, case kept
    text = 'He said "hi".'
    spans = tokenizer.word_spans(text)
    assert [s.word for s in spans] == ["He", "said", "``", "hi", "''", "."]
    assert [text[s.start : s.end] for s in spans] == ["He", "said", '"', "hi", '"', "."]
    assert spans[0] == WordSpan("He", 0, 2)


def test_the_span_of_a_case_folded_word_is_the_original_text():
    text = "İstanbul  IS big"
    spans = modes()[0].word_spans(text)  # lowercased: "İ".lower() is two characters
    assert [s.word for s in spans] == ["i̇stanbul", "is", "big"]
    assert [text[s.start : s.end] for s in spans] == ["İstanbul", "IS", "big"]


def test_a_glued_angle_token_spans_all_its_pieces():
    text = "a <unk> b"
    assert modes()[0].word_spans(text)[1] == WordSpan("<unk>", 2, 7)


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (["the", "cat"], ["sat", "on", "the", "mat", "."]),
        (["i"], ["did", "n't", "say", ",", "did", "i", "?"]),
        ([], ["hello", "world", "!"]),
        (["he", "said"], ["(", "quietly", ")", "no", "."]),
    ],
)
def test_assembled_text_reads_as_the_detokenised_sentence(prompt, words):
    assembler = TextAssembler(prompt, detokenize(prompt))
    pieces = [assembler.add(w) for w in words]
    assert detokenize(prompt) + "".join(pieces) == detokenize(prompt + words)
    assert all(piece.strip() for piece in pieces)  # every word shows


def test_a_prompt_that_ends_in_a_space_gets_no_second_one():
    assembler = TextAssembler(["the", "cat"], "The cat ")
    assert [assembler.add(w) for w in ["sat", "down"]] == ["sat", " down"]


def test_a_long_sentence_assembles_as_a_short_one():
    words = ["the", "cat", "said", "``", "hello", "''", "and", "did", "n't", "stop", ","] * 6
    assembler = TextAssembler(words[:5], detokenize(words[:5]))
    text = detokenize(words[:5]) + "".join(assembler.add(w) for w in words[5:])
    assert text == detokenize(words)  # past the context window too


def test_detokenised_words_know_where_they_start():
    words = ["he", "said", "``", "hi", "''", "and", "did", "n't", "go", "."]
    text, offsets = detokenize_with_offsets(words)
    assert text == 'he said "hi" and didn\'t go.'
    assert [text[o] for o in offsets] == ["h", "s", '"', "h", '"', "a", "d", "n", "g", "."]
