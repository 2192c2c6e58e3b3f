"""The modified Kneser-Ney n-gram model: against a naive reference, ARPA, tensors, KenLM."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from rnnlm.model.ngram import FALLBACK_DISCOUNTS, NgramModel, kn_discounts
from rnnlm.model.vocab import START_ID, Vocabulary

# 30 sentences over 15 words.
CORPUS = (
    "the cat sat on the mat | the dog sat on the rug | a cat ran | "
    "the dog ran under the mat | a big dog sat | the small cat sat on a mat | the cat sat | "
    "a dog ran on the rug | the big cat ran under a rug | the cat sat on the mat | "
    "a small dog sat on the mat | the dog sat | the cat ran | a red cat sat on the red mat | "
    "the dog ran | the big dog sat on the big rug | a cat sat under the mat | "
    "the cat and the dog sat | the cat and the dog ran | a dog and a cat sat on a rug | "
    "the small dog ran under the rug | the cat sat on the rug | a cat sat on a mat | "
    "the red dog sat | the cat sat on the mat | a big red dog ran | the dog sat on the mat | "
    "the cat ran under the rug | a dog sat on a rug | the mat and the rug"
)
SENTENCES = CORPUS.split(" | ")

LN10 = math.log(10.0)


def framed(vocab: Vocabulary, sentences=SENTENCES) -> list[np.ndarray]:
    return [vocab.frame(s.split()) for s in sentences]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    # 15 entries: the rarest words become UNKNOWN_TOKEN, an ordinary trained word.
    return Vocabulary.build([s.split() for s in SENTENCES], max_size=15)


# ---------------------------------------------------------------------------------------
# A deliberately naive reference: dicts of tuples, straight from Chen & Goodman's formulas.


def reference_discounts(counts) -> tuple[float, float, float]:
    n1, n2, n3, n4 = (sum(1 for c in counts if c == r) for r in (1, 2, 3, 4))
    try:
        y = n1 / (n1 + 2 * n2)
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    except ZeroDivisionError:
        return FALLBACK_DISCOUNTS
    return d if all(0 < d[r] <= r + 1 for r in range(3)) else FALLBACK_DISCOUNTS


class ReferenceKN:
    def __init__(self, sequences, vocab_size: int, order: int):
        self.vocab_size, self.order = vocab_size, order
        self.counts = {k: Counter() for k in range(1, order + 1)}
        for s in sequences:
            s = tuple(int(w) for w in s)
            for k in range(1, order + 1):
                for i in range(len(s) - k + 1):
                    self.counts[k][s[i : i + k]] += 1
        adjusted = {order: dict(self.counts[order])}
        for k in range(1, order):
            left = Counter(gram[1:] for gram in self.counts[k + 1])  # distinct left words
            adjusted[k] = {g: c if g[0] == START_ID else left[g] for g, c in self.counts[k].items()}
        adjusted[1].pop((START_ID,), None)  # never predicted
        self.discounts = {k: reference_discounts(adjusted[k].values()) for k in adjusted}
        self.children = {k: defaultdict(dict) for k in adjusted}  # context -> word -> count
        for k, grams in adjusted.items():
            for gram, c in grams.items():
                self.children[k][gram[:-1]][gram[-1]] = c

    def _discount(self, k: int, c: int) -> float:
        return 0.0 if c == 0 else self.discounts[k][min(c, 3) - 1]

    def prob(self, word: int, context: tuple) -> float:
        context = context[max(0, len(context) - self.order + 1) :] if self.order > 1 else ()
        k = len(context) + 1
        # Below the unigrams: uniform over all words but SENTENCE_START.
        lower = self.prob(word, context[1:]) if k > 1 else 1.0 / (self.vocab_size - 1)
        children = self.children[k].get(context)
        if not children:
            return lower
        total = sum(children.values())
        gamma = sum(self._discount(k, c) for c in children.values()) / total
        c = children.get(word, 0)
        return (c - self._discount(k, c)) / total + gamma * lower

    def matched(self, word: int, context: tuple) -> int:
        """The length of the longest n-gram ending in ``word`` seen in training."""
        gram = (*context, word)
        k = min(self.order, len(gram))
        while k > 1 and self.counts[k][gram[len(gram) - k :]] == 0:
            k -= 1
        return k


def contexts(sequences, order: int, vocab_size: int, extra: int = 20) -> list[tuple]:
    """Every context the training data shows, plus random unseen ones."""
    found = set()
    for s in sequences:
        s = tuple(int(w) for w in s)
        for i in range(1, len(s)):
            found.add(s[max(0, i - max(order - 1, 1)) : i])
    rng = np.random.default_rng(0)
    words = [w for w in range(vocab_size) if w != START_ID]
    found.update(tuple(int(w) for w in rng.choice(words, max(order - 1, 1))) for _ in range(extra))
    return sorted(found)


def score_all(model: NgramModel, ctxs: list[tuple], words: list[int]):
    """ln p(w | h) and matched order for every (h, w); arrays of shape (len(ctxs), len(words))."""
    queries = [np.array([*h, w]) for h in ctxs for w in words]
    logp, matched = model.token_log_probs(queries)
    shape = (len(ctxs), len(words))
    return np.array([lp[-1] for lp in logp]).reshape(shape), np.array(
        [m[-1] for m in matched]
    ).reshape(shape)


# ---------------------------------------------------------------------------------------
# Estimation


def test_discounts_by_hand():
    # n1=4, n2=2, n3=1, n4=1: Y = 4/8 = 0.5, D1 = 1 - 2*0.5*2/4 = 0.5,
    # D2 = 2 - 3*0.5*1/2 = 1.25, D3+ = 3 - 4*0.5*1/1 = 1.
    d = kn_discounts(np.array([1, 1, 1, 1, 2, 2, 3, 4, 7, 0]))
    np.testing.assert_allclose(d, [0.5, 1.25, 1.0])


@pytest.mark.parametrize(
    "counts",
    [[], [1, 1, 1], [1, 2, 2], [2, 3, 4], [1, 1, 2, 3], [1, 2, 3, 3, 3, 3, 3, 4]],
    ids=["empty", "no n2", "no n3", "no n1", "no n4 but fine", "D2 negative"],
)
def test_degenerate_discounts_fall_back(counts):
    d = kn_discounts(np.array(counts, dtype=np.int64))
    assert np.all(np.isfinite(d)) and np.all(d > 0) and np.all(d <= [1, 2, 3])
    assert tuple(d) == pytest.approx(reference_discounts(counts))


def test_unigram_model_by_hand():
    # Counts a:4 b:3 c:2 d:2 e:1 f:1 g:1 SENTENCE_END:1, so D = (0.5, 1.25, 1.0) as above;
    # total 15, left-over mass gamma = (4*0.5 + 2*1.25 + 2*1.0)/15, spread over 9 words.
    vocab = Vocabulary.build([list("abcdefg")], max_size=10)
    model = NgramModel.estimate([vocab.frame(list("aaaabbbccddefg"))], vocab.tokens, order=1)
    gamma = 6.5 / 15
    expected = {"a": 3 / 15, "b": 2 / 15, "c": 0.75 / 15, "e": 0.5 / 15, "UNKNOWN_TOKEN": 0}
    for word, discounted in expected.items():
        ids = np.array([START_ID, vocab.index[word]])
        (logp,), (matched,) = model.token_log_probs([ids])
        assert math.exp(logp[0]) == pytest.approx(discounted + gamma / 9, abs=1e-12)
        assert matched[0] == 1


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_probability_matches_the_reference(vocab, order):
    seqs = framed(vocab)
    model = NgramModel.estimate(seqs, vocab.tokens, order)
    ref = ReferenceKN(seqs, len(vocab), order)
    if order >= 3:  # orders 2.. have enough n-grams for the formulas, not the fallback
        assert all(ref.discounts[k] != FALLBACK_DISCOUNTS for k in range(2, order + 1))
    ctxs = contexts(seqs, order, len(vocab))
    words = [w for w in range(len(vocab)) if w != START_ID]
    logp, matched = score_all(model, ctxs, words)
    want = np.array([[ref.prob(w, h) for w in words] for h in ctxs])
    np.testing.assert_allclose(np.exp(logp), want, rtol=0, atol=1e-6)
    assert matched.tolist() == [[ref.matched(w, h) for w in words] for h in ctxs]


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_every_distribution_sums_to_one(vocab, order):
    seqs = framed(vocab)
    model = NgramModel.estimate(seqs, vocab.tokens, order)
    ctxs = contexts(seqs, order, len(vocab))
    words = [w for w in range(len(vocab)) if w != START_ID]
    logp, _ = score_all(model, ctxs, words)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=0, atol=1e-6)
    # SENTENCE_START is never predicted: KenLM's -99 in log10 (plus backoffs after a context).
    assert model.to_tensors()["logp.1"][START_ID] == pytest.approx(-99 * LN10)


def test_token_log_probs_match_the_reference(vocab):
    order = 3
    seqs = framed(vocab)
    model = NgramModel.estimate(seqs, vocab.tokens, order)
    ref = ReferenceKN(seqs, len(vocab), order)
    unseen = ["the mat sat on a cat", "zebra zebra under the big", "", "cat"]
    queries = [*seqs, *framed(vocab, unseen), np.array([START_ID]), vocab.encode(["the", "rug"])]
    logps, matched = model.token_log_probs(queries)
    for s, lp, m in zip(queries, logps, matched):
        assert lp.shape == m.shape == (len(s) - 1,) and lp.dtype == np.float64
        h = [tuple(s[:i]) for i in range(1, len(s))]
        np.testing.assert_allclose(np.exp(lp), [ref.prob(s[i + 1], h[i]) for i in range(len(h))])
        assert m.tolist() == [ref.matched(s[i + 1], h[i]) for i in range(len(h))]
    assert model.token_log_probs([]) == ([], [])


def test_tiny_corpora_stay_finite():
    vocab = Vocabulary.build([["a"]], max_size=10)
    for sentences in ([["a"]], [[]], []):
        model = NgramModel.estimate([vocab.frame(s) for s in sentences], vocab.tokens, 4)
        (logp,), _ = model.token_log_probs([vocab.frame(["a", "a", "b"])])
        assert np.all(np.isfinite(logp))
        all_words = np.array([0, 2, 3])
        total = sum(
            math.exp(model.token_log_probs([np.array([START_ID, w])])[0][0][0]) for w in all_words
        )
        assert total == pytest.approx(1.0)


def test_bad_input_is_a_value_error(vocab):
    ok = vocab.frame(["the", "cat"])
    with pytest.raises(ValueError, match="outside"):
        NgramModel.estimate([np.array([START_ID, len(vocab), 2])], vocab.tokens)
    with pytest.raises(ValueError, match="sequence 0 must start with SENTENCE_START"):
        NgramModel.estimate([ok[1:]], vocab.tokens)
    with pytest.raises(ValueError, match="sequence 2 must start with SENTENCE_START"):
        NgramModel.estimate([ok, ok[:0], np.array([START_ID, 4, START_ID, 2])], vocab.tokens)
    with pytest.raises(ValueError, match="order"):
        NgramModel.estimate([ok], vocab.tokens, order=7)
    model = NgramModel.estimate([ok], vocab.tokens, order=2)
    with pytest.raises(ValueError, match="outside"):
        model.token_log_probs([np.array([START_ID, -1])])


def test_ids_and_repr(vocab):
    model = NgramModel.estimate(framed(vocab), vocab.tokens, 3)
    assert model.ids(["the", "zebra", "SENTENCE_END"]).tolist() == [vocab.index["the"], 0, 0]
    assert repr(model).startswith("NgramModel(order=3, vocab=15, ngrams=[15, ")


def test_tensors_round_trip(vocab):
    from safetensors.numpy import load, save

    model = NgramModel.estimate(framed(vocab), vocab.tokens, 3)
    tensors = load(save(model.to_tensors()))
    again = NgramModel.from_tensors(tensors, vocab.tokens, 3)
    seqs = framed(vocab, ["the cat sat on a red rug", "a dog"])
    for a, b in zip(model.token_log_probs(seqs)[0], again.token_log_probs(seqs)[0]):
        np.testing.assert_array_equal(a, b)
    del tensors["backoff.2"]
    with pytest.raises(ValueError, match="backoff.2"):
        NgramModel.from_tensors(tensors, vocab.tokens, 3)


# ---------------------------------------------------------------------------------------
# ARPA


def arpa_text(model: NgramModel) -> str:
    out = io.StringIO()
    model.to_arpa(out)
    return out.getvalue()


@pytest.mark.parametrize("order", [1, 2, 4])
def test_arpa_round_trip(vocab, order):
    model = NgramModel.estimate(framed(vocab), vocab.tokens, order)
    text = arpa_text(model)
    assert text.startswith("\\data\\\nngram 1=15\n") and text.endswith("\\end\\\n")
    again = NgramModel.from_arpa(io.StringIO(text))
    assert again.order == order and again.vocab == vocab.tokens  # same word order here
    seqs = [*framed(vocab), *framed(vocab, ["zebra the rug sat", "cat cat cat"])]
    (want, want_m), (got, got_m) = model.token_log_probs(seqs), again.token_log_probs(seqs)
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=0, atol=1e-6)
    assert np.concatenate(got_m).tolist() == np.concatenate(want_m).tolist()
    assert arpa_text(again) == text


def test_arpa_without_unk_gets_one():
    text = "\\data\\\nngram 1=3\n\n\\1-grams:\n-99\t<s>\n-0.3\t</s>\n-0.2\tword\n\n\\end\\\n"
    model = NgramModel.from_arpa(text.splitlines())
    assert model.vocab == ["UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "word"]
    (logp,), _ = model.token_log_probs([model.ids(["?", "word"])])
    assert logp.tolist() == pytest.approx([-0.2 * LN10])
    (logp,), _ = model.token_log_probs([model.ids(["word", "?"])])
    assert logp.tolist() == pytest.approx([-100 * LN10])


def _edit(lines: list[str], starts: str, new: str | None) -> tuple[list[str], int]:
    """Replace (with 0 or more lines) the first line starting with ``starts``; its number."""
    i = next(i for i, line in enumerate(lines) if line.startswith(starts))
    return lines[:i] + (new.split("\n") if new is not None else []) + lines[i + 1 :], i + 1


def _first_bigram(lines: list[str]) -> str:
    return lines[lines.index("\\2-grams:") + 1]


MALFORMED = (
    "count-too-big count-too-small no-end no-data bad-prob fields unknown twice order-7 positive "
    "no-prefix"
)


@pytest.mark.parametrize("case", MALFORMED.split())
def test_malformed_arpa_names_the_line(vocab, case):
    model = NgramModel.estimate(framed(vocab), vocab.tokens, 3)
    lines = arpa_text(model).splitlines()
    n2 = len(model.to_tensors()["keys.2"])
    bigram = _first_bigram(lines)
    prob, words = bigram.split("\t")[:2]
    if case == "count-too-big":  # the reader meets the next section instead
        lines, _ = _edit(lines, "ngram 2=", f"ngram 2={n2 + 1}")
        where, what = lines.index("\\3-grams:") + 1, f"2-gram {n2 + 1} of {n2 + 1}"
    elif case == "count-too-small":  # the last 2-gram is where \3-grams: should be
        lines, _ = _edit(lines, "ngram 2=", f"ngram 2={n2 - 1}")
        where, what = lines.index("\\3-grams:") - 1, r"expected '\\\\3-grams:'"
    elif case == "no-end":
        lines, _ = _edit(lines, "\\end\\", None)
        where, what = len(lines) + 1, "end of file"
    elif case == "no-data":
        lines, where = _edit(lines, "\\data\\", "data")
        what = r"expected '\\\\data\\\\', got 'data'"
    elif case == "bad-prob":
        lines, where = _edit(lines, bigram, f"-0.1x\t{words}")
        what = "expected a log10 probability <= 0, got '-0.1x'"
    elif case == "fields":
        lines, where = _edit(lines, bigram, f"{prob}\t{words.split()[0]}")
        what = "expected 3 or 4 fields 'log10prob w1 w2 \\[backoff\\]', got 2"
    elif case == "unknown":
        lines, where = _edit(lines, bigram, f"{prob}\tthe zebra")
        what = "word 'zebra' is not among the 1-grams"
    elif case == "twice":
        lines, where = _edit(lines, _first_bigram(lines), f"{bigram}\n{bigram}")
        lines = "\n".join(lines).replace(f"ngram 2={n2}", f"ngram 2={n2 + 1}").splitlines()
        where, what = where + 1, "listed twice"
    elif case == "order-7":
        lines, where = _edit(
            lines, "ngram 3=", "ngram 3=1\nngram 4=1\nngram 5=1\nngram 6=1\nngram 7=1"
        )
        where, what = where + 4, "order 7 > max_order 6"
    elif case == "positive":
        lines, where = _edit(lines, bigram, f"0.5\t{words}")
        what = "log10 probability <= 0, got '0.5'"
    else:  # a 2-gram that is a context (it has a backoff) goes missing
        context = next(line for line in lines if line.count("\t") == 2 and " " in line)
        lines, _ = _edit(lines, context, None)
        lines, _ = _edit(lines, "ngram 2=", f"ngram 2={n2 - 1}")
        prefix, trigrams = context.split("\t")[1] + " ", lines.index("\\3-grams:") + 1
        where = 1 + next(i for i in range(trigrams, len(lines)) if "\t" + prefix in lines[i])
        what = "the prefix of this 3-gram is not listed among the 2-grams"
    with pytest.raises(ValueError, match=f"^line {where}: .*{what}") as err:
        NgramModel.from_arpa(lines)
    assert len(str(err.value)) < 200


def test_long_lines_are_quoted_short(vocab):
    lines = arpa_text(NgramModel.estimate(framed(vocab), vocab.tokens, 2)).splitlines()
    lines, where = _edit(lines, _first_bigram(lines), "-1.0 " + "x" * 500)
    with pytest.raises(ValueError, match=f"^line {where}: expected 3 fields") as err:
        NgramModel.from_arpa(lines)
    assert str(err.value).endswith(", got 2: '-1.0 " + "x" * 35 + "...'")  # 40 characters


@pytest.mark.parametrize("word", ["<s>", "two words", "tab\there"])
def test_unwritable_words_are_refused(word):
    vocab = ["UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", word]
    model = NgramModel.estimate([np.array([START_ID, 3, 2])], vocab, 2)
    with pytest.raises(ValueError, match="cannot be written as an ARPA word"):
        arpa_text(model)


# ---------------------------------------------------------------------------------------
# KenLM reads our ARPA files and scores as we do


@pytest.fixture(scope="module")
def prose(pydoc_text) -> list[list[str]]:
    """Lines of Python's help topics as plain ASCII words (KenLM splits on spaces)."""
    sentences = [
        [w for w in line.split() if w.isascii() and not w.startswith("<")]
        for line in pydoc_text.splitlines()
    ]
    return [s for s in sentences if s]


@pytest.mark.parametrize("order", [2, 3, 5, 6])  # KenLM reads bigram models and up
def test_kenlm_reads_the_same_model(prose, tmp_path, order):
    kenlm = pytest.importorskip("kenlm")
    train, held_out = prose[:-300], prose[-300:]
    vocab = Vocabulary.build(train, max_size=2000)
    model = NgramModel.estimate([vocab.frame(s) for s in train], vocab.tokens, order)
    path = tmp_path / "model.arpa"
    with open(path, "w", encoding="utf-8") as f:
        model.to_arpa(f)
    lm = kenlm.Model(str(path))
    assert lm.order == order
    sentences = [*train[:300], *held_out]
    logps, matched = model.token_log_probs([vocab.frame(s) for s in sentences])
    for words, lp, m in zip(sentences, logps, matched):
        scores = list(lm.full_scores(" ".join(words), bos=True, eos=True))
        np.testing.assert_allclose(lp / LN10, [s[0] for s in scores], rtol=0, atol=1e-4)
        assert m.tolist() == [s[1] for s in scores]
