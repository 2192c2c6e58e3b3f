"""Stop strings over generated text that arrives a word at a time (OpenAI's ``stop``).

A completion ends before the first stop string in its text, and the stop string is not
returned. Streamed text can only be handed out once nothing in it can still become the
start of a stop string, so the end that could is held back until the next word decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Token:
    word: str  # the model's word, or SENTENCE_END
    offset: int  # where its text starts in the completion's text (the continuation)
    logprob: float  # ln p as the generator reported it


@dataclass
class Released:
    """What may be handed out now: text and the tokens whose text starts in it."""

    text: str = ""
    tokens: list[Token] = field(default_factory=list)
    stopped: bool = False  # a stop string was reached: the completion is over


class StopWatch:
    """One completion's generated text, checked for ``stops`` as words come."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.released = 0  # characters handed out
        self._pending = ""  # text held back: it may be the start of a stop string
        self._held: list[Token] = []

    @property
    def length(self) -> int:
        """Characters of the continuation so far, handed out or held."""
        return self.released + len(self._pending)

    def add(self, piece: str, word: str, logprob: float) -> Released:
        """The next word, as the text ``piece`` it adds (its space before it included)."""
        self._held.append(Token(word, self.length + len(piece) - len(piece.lstrip()), logprob))
        text = self._pending + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            return self._release(text, min(hits), stopped=True)
        return self._release(text, len(text) - self._held_back(text))

    def finish(self) -> Released:
        """The rest, once the completion ended by itself (SENTENCE_END or max_tokens)."""
        return self._release(self._pending, len(self._pending))

    def _held_back(self, text: str) -> int:
        """The longest end of ``text`` that is a proper start of a stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _release(self, text: str, upto: int, stopped: bool = False) -> Released:
        end = self.released + upto
        tokens = [t for t in self._held if t.offset < end]
        self._held = [] if stopped else self._held[len(tokens) :]
        self._pending = "" if stopped else text[upto:]
        self.released = end
        return Released(text[:upto], tokens, stopped)
