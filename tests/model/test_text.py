"""Tokenisation (NLTK, offline), vocabulary and corpus formats."""

import json

import nltk
import pytest
from nltk.tabdata import TabEncoder

from rnnlm.model import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, Corpus, Tokenizer, Vocabulary
from tests.conftest import shared_file

TEXT = (
    "Dr. Smith went to Washington. He arrived at 5 p.m. on Monday! "
    "Didn't he call Mrs. Jones? She said: \"I can't come.\""
)


def test_trained_punkt_splits_sentences_and_words():
    tok = Tokenizer.fit(TEXT * 20, use_pretrained=False)
    assert tok.punkt_source == "trained"
    sentences = tok.sentences("He arrived on Monday. She didn't call!")
    assert sentences == [["he", "arrived", "on", "monday", "."], ["she", "did", "n't", "call", "!"]]


def test_lowercase_is_switchable():
    tok = Tokenizer.fit(TEXT, lowercase=False, use_pretrained=False)
    assert tok.words("The Cat") == ["The", "Cat"]
    assert tok.normalize(["The"]) == ["The"]


def test_tokenizer_json_round_trip_is_identical():
    tok = Tokenizer.fit(TEXT * 5, use_pretrained=False)
    data = json.loads(json.dumps(tok.to_json()))
    again = Tokenizer.from_json(data)
    assert again.to_json() == tok.to_json()
    assert again.sentences(TEXT) == tok.sentences(TEXT)


def test_pretrained_punkt_is_used_where_installed(tmp_path, monkeypatch):
    """Install a punkt_tab model in a temporary NLTK data dir and check it is picked up."""
    trained = Tokenizer.fit(TEXT * 5, use_pretrained=False).punkt
    model_dir = tmp_path / "tokenizers" / "punkt_tab" / "english"
    model_dir.mkdir(parents=True)
    enc = TabEncoder()
    (model_dir / "collocations.tab").write_text(enc.tups2tab(trained.collocations))
    (model_dir / "sent_starters.txt").write_text(enc.set2txt(trained.sent_starters | {"zzz"}))
    (model_dir / "abbrev_types.txt").write_text(enc.set2txt(trained.abbrev_types))
    (model_dir / "ortho_context.tab").write_text(enc.ivdict2tab(trained.ortho_context))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    tok = Tokenizer.fit("Some other text. Entirely.")
    assert tok.punkt_source == "pretrained:english"
    assert "zzz" in tok.punkt.sent_starters


def test_vocabulary_keeps_most_frequent_with_deterministic_ties():
    sentences = [["b", "a", "c"], ["a", "d", "c"], ["e"]]
    vocab = Vocabulary.build(sentences, max_size=6)
    # a and c appear twice; b, d, e once: the tie goes to the alphabetically first.
    assert vocab.tokens == [UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END, "a", "c", "b"]
    assert Vocabulary.build(list(reversed(sentences)), 6).tokens == vocab.tokens
    assert vocab.frame(["a", "zzz"]).tolist() == [1, 3, 0, 2]
    assert vocab.frame(["a"], bos=False, eos=False).tolist() == [3]


def test_corpus_paragraph_modes():
    text = "one line\nwrapped here.\n\nsecond paragraph.\r\n"
    assert Corpus.from_text(text).paragraphs == ("one line\nwrapped here.", "second paragraph.")
    assert len(Corpus.from_text(text, paragraphs="line")) == 3
    with pytest.raises(ValueError, match="paragraphs must be one of"):
        Corpus.from_text(text, paragraphs="sentence")


def test_reddit_csv_corpus():
    corpus = Corpus.from_file(shared_file("reddit/reddit-comments-2015-08-sample.csv"))
    # 1,000 lines of CSV; comments span several lines, so there are about 210 rows.
    assert 200 <= len(corpus) <= 1000
    tok = Tokenizer.fit(corpus.text)
    assert sum(len(tok.sentences(p)) for p in corpus.paragraphs[:50]) > 50


def shared_lines() -> list[str]:
    """Every line of the shared corpora (the reddit sample: every line of every comment)."""
    import csv

    lines: list[str] = []
    for name in ("wikitext-2/valid.txt", "wikitext-2/test.txt", "tinyshakespeare/input.txt"):
        lines += shared_file(name).read_text(encoding="utf-8").splitlines()
    csv.field_size_limit(2**31 - 1)
    with shared_file("reddit/reddit-comments-2015-08-sample.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            lines += row["body"].splitlines()
    return lines


def test_the_fast_path_gives_what_nltk_gives_on_every_shared_line():
    """Text already split into plain words takes the fast path; wherever it does, the words
    are NLTK's own, on every line of the shared corpora."""
    from rnnlm.model.text import _NLTK_SPLITS_WORDS, _PLAIN_TEXT, _nltk_words, _plain

    lines = shared_lines()
    fast = [line for line in lines if _PLAIN_TEXT.fullmatch(line)]
    fast = [line for line in fast if not _NLTK_SPLITS_WORDS.search(line)]
    spaced = [line for line in fast if not _NLTK_SPLITS_WORDS.search(f" {line} ")]
    assert spaced == [line for line in lines if _plain(line)]  # the substring pre-check agrees
    assert len(fast) > 5000  # the path is taken (5,693 of 49,099 lines here)
    assert sum("<unk>" in line for line in fast) > 1000  # WikiText's <unk> among them
    assert sum('"' in line for line in fast) > 100 and sum("@-@" in line for line in fast) > 100
    for line in lines:
        assert _nltk_words(line) == _slow_path(line), line


def test_detokenize_gives_what_nltk_gives_on_every_shared_line():
    """``detokenize`` skips the rules of NLTK's detokenizer that cannot match; its text is
    NLTK's own for the words of every line of the shared corpora as tokenised, and of
    every tenth split at spaces (tabs, non-ASCII text and NLTK's own padding included)."""
    from rnnlm.model.detokenize import _DETOKENIZER, detokenize
    from rnnlm.model.text import _nltk_words

    for i, line in enumerate(shared_lines()):
        for words in (_nltk_words(line), line.split(" ")) if i % 10 == 0 else [_nltk_words(line)]:
            assert detokenize(words) == _DETOKENIZER.detokenize(words), line


def test_detokenize_on_the_words_nltks_rules_look_at():
    import random

    from rnnlm.model import detokenize as module
    from rnnlm.model.detokenize import _DETOKENIZER, detokenize
    from rnnlm.model.text import _PLAIN_MARKS

    # Every rule of this NLTK is known (one it does not know always runs: slower, not wrong).
    steps = module._ENDING_QUOTE_STEPS + module._PUNCTUATION_STEPS + module._STARTING_QUOTE_STEPS
    assert all(needs for _, _, needs in steps) and len(steps) == 21
    assert all(pair for _, pair in module._CONTRACTION_STEPS)

    pieces = [*_PLAIN_MARKS, *",.?!;:()[]{}<>$%&#*+=/@", "``", "''", '"', "'", "...", "--"]
    pieces += ["a", "The", "x1", "42", "can", "not", "CAN", "Not", "'t", "is", "WAS", "d", "'ye"]
    pieces += ["gim", "me", "gon", "na", "got", "ta", "lem", "more", "'n", "wan", "N'T", "'S"]
    pieces += ["ſ", "iſ", "Ｋ", "naïve", "\t", "a\tb", "", " ", "-LRB-", "@-@", "<unk>"]
    rng = random.Random(0)
    for _ in range(20_000):
        words = [rng.choice(pieces) for _ in range(rng.randint(1, 9))]
        assert detokenize(words) == _DETOKENIZER.detokenize(words), words


def _slow_path(text: str) -> list[str]:
    """NLTK's words, ``<unk>``-like tokens glued back: what ``_nltk_words`` must give."""
    from rnnlm.model.text import _ANGLE_TOKEN, _WORD_TOKENIZER, _rejoin_angle_tokens

    return _rejoin_angle_tokens(_WORD_TOKENIZER.tokenize(text), set(_ANGLE_TOKEN.findall(text)))


def test_the_fast_path_on_generated_text_and_nltks_contractions():
    import random

    from rnnlm.model.text import _PLAIN_MARKS, _REWRITTEN, _WORD_TOKENIZER, _nltk_words

    pieces = [*_PLAIN_MARKS, *",.?!;:()[]{}$%&#*+=/", "a", "The", "x1", "42", "can", "not"]
    rng = random.Random(0)
    for _ in range(20_000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        assert _nltk_words(text) == _WORD_TOKENIZER.tokenize(text), text
    # With the tokens NLTK cuts (<unk>) or rewrites ("), anywhere in the text, among the
    # words its quote, clitic and contraction rules look at.
    pieces += [*_REWRITTEN, "<unk>", "<UNK>", "<s>", "<2>", "<cannot>", "<wanna>", "'t", "is"]
    pieces += ["cannot", "Gonna", "WANNA", "lemme", "more", "'n"]
    for _ in range(40_000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        text = rng.choice(["", " ", "\t"]) + text + rng.choice(["", "  "])
        assert _nltk_words(text) == _slow_path(text), text
    # Words NLTK splits although they are plain: its contraction patterns see them (at the
    # end of the text too, where NLTK's own padding puts a space after "wanna").
    assert _nltk_words("I wanna") == ["I", "wan", "na"]
    assert _nltk_words("I cannot go , gonna stay") == [
        "I",
        "can",
        "not",
        "go",
        ",",
        "gon",
        "na",
        "stay",
    ]
