"""Prompts as the model's words, and the tokenizer endpoints (/models/{id}/tokenize ...).

Tokens are the model's words: a text is tokenised as its training text was
(``Tokenizer.word_spans``: the same words as ``Tokenizer.words``, with where each starts in
the caller's text), and token ids are indices into the model's vocabulary. The tokenizer
endpoints are vLLM's (``lm-evaluation-harness``'s ``tokenizer_backend=remote`` calls them),
so that a client counts tokens exactly as the server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnnlm.model.detokenize import detokenize
from rnnlm.model.scoring import Words
from rnnlm.model.text import detokenize_with_offsets
from rnnlm.model.vocab import (
    END_ID,
    SENTENCE_END,
    SENTENCE_START,
    SPECIAL_TOKENS,
    START_ID,
    UNKNOWN_TOKEN,
)
from rnnlm.server.cache import LoadedModel
from rnnlm.server.http.errors import BadField
from rnnlm.server.http.stops import Token
from rnnlm.server.records import Model
from rnnlm.server.serving import check_sentence_size


@dataclass(frozen=True)
class Prompt:
    text: str  # as the caller sent it (token ids: their words, detokenised)
    words: Words  # the model's words
    offsets: list[int]  # where each word starts in ``text``
    # Token ids that began with SENTENCE_START (a tokenizer's BOS, as lm-eval sends for an
    # empty context): it is echoed as a token of its own, without a log-probability, so
    # that the caller's token count and the echoed one agree.
    start: bool = False

    def echo_tokens(self) -> list[Token]:
        """The tokens an echo of the prompt shows (their log-probs are filled in later)."""
        tokens = [Token(SENTENCE_START, 0, 0.0)] if self.start else []
        return tokens + [Token(w, o, 0.0) for w, o in zip(self.words, self.offsets)]


def prompt_of(model: LoadedModel, prompt: str | list[int], where: str, limit: int) -> Prompt:
    """A text as the model's words and where each starts; token ids as their words, and
    the text those make."""
    if isinstance(prompt, str):
        check_sentence_size(prompt, where, limit)  # before any tokenising
        spans = model.lm.tokenizer.word_spans(prompt)
        return Prompt(prompt, Words(s.word for s in spans), [s.start for s in spans])
    start = prompt[:1] == [START_ID]
    words = Words(words_of_ids(model, prompt[1:] if start else prompt, where))
    check_sentence_size(words, where, limit)
    text, offsets = detokenize_with_offsets(list(words))
    return Prompt(text, words, offsets, start)


def words_of_ids(model: LoadedModel, ids: Sequence[int], where: str) -> list[str]:
    """The words of vocabulary indices (of a prompt without its leading SENTENCE_START,
    which is the sentence start every prompt has); SENTENCE_END cannot be in a prompt."""
    tokens = model.lm.vocab.tokens
    for i in ids:
        if not 0 <= i < len(tokens) or i in (START_ID, END_ID):
            raise BadField(
                "prompt",
                f"{where} has token id {i}: ids are indices of the model's vocabulary, in "
                f"[0, {len(tokens)}), with SENTENCE_START ({START_ID}) only first and "
                f"SENTENCE_END ({END_ID}) nowhere",
            )
    return [tokens[i] for i in ids]


def text_of_ids(model: LoadedModel, ids: Sequence[int]) -> str:
    """Token ids as text (/detokenize); the sentence's start and end are not text."""
    tokens = model.lm.vocab.tokens
    for i in ids:
        if not 0 <= i < len(tokens):
            raise BadField("tokens", f"token id {i} is outside the vocabulary [0, {len(tokens)})")
    return detokenize([tokens[i] for i in ids if i not in (START_ID, END_ID)])


def tokenize(model: LoadedModel, text: str, add_special_tokens: bool, limit: int) -> list[int]:
    """The vocabulary indices of ``text``'s words (UNKNOWN_TOKEN's for unknown ones), with
    SENTENCE_START first if asked. The name of a special token alone is that token, as a
    Hugging Face tokenizer encodes its own special tokens (lm-eval asks for the ids of BOS
    and EOS this way)."""
    start = [START_ID] if add_special_tokens else []
    if text in SPECIAL_TOKENS:
        return [*start, SPECIAL_TOKENS.index(text)]
    check_sentence_size(text, "prompt", limit)
    vocab = model.lm.vocab
    return [*start, *(int(i) for i in vocab.encode(model.lm.words(text, "prompt")))]


def tokenizer_info(model: LoadedModel, limit: int) -> dict:
    tokenizer = model.lm.tokenizer
    return {
        "model": model.model_id,
        "version": model.version,
        "vocab_size": len(model.lm.vocab),
        "bos_token": SENTENCE_START,
        "eos_token": SENTENCE_END,
        "unk_token": UNKNOWN_TOKEN,
        "lowercase": tokenizer.lowercase,
        "max_model_len": limit,
    }


def model_card(record: Model) -> dict:
    """A model as OpenAI lists one, with the version that serves now (0: none yet)."""
    return {
        "id": record.model_id,
        "object": "model",
        "created": int(record.created_at),
        "owned_by": "rnnlm",
        "version": record.current_version,
    }
