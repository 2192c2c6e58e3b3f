"""``LanguageModel``: a trained engine with its tokenizer and vocabulary, ready to use."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checkpoint
from .config import ModelConfig, TrainConfig, check_device
from .engines import Engine, create_engine
from .generation import (
    GeneratedSentence,
    GenerationConfig,
    GenerationEvent,
    beam_events,
    sample_events,
)
from .scoring import SentenceInput, SentenceScore, score_sentences, sentence_words
from .text import Tokenizer, detokenize
from .vocab import SENTENCE_END, Vocabulary

if TYPE_CHECKING:
    from .training import TrainingState


class LanguageModel:
    """Score and generate sentences; save and load as safetensors + JSON."""

    def __init__(
        self,
        config: ModelConfig,
        tokenizer: Tokenizer,
        vocab: Vocabulary,
        engine: Engine,
        train_config: TrainConfig | None = None,
        training_state: TrainingState | None = None,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.vocab = vocab
        self.engine = engine
        self.train_config = train_config
        self.training_state = training_state
        # Kept only while training or when loaded from a resumable checkpoint.
        self.best_weights: dict[str, np.ndarray] | None = None
        self.resume_tensors: dict[str, dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return (
            f"LanguageModel(cell={self.config.cell!r}, vocab={len(self.vocab)}, "
            f"hidden={self.config.hidden_size}, device={str(self.device)!r})"
        )

    @property
    def device(self) -> str:
        return str(getattr(self.engine, "device", "cpu"))

    # -- scoring ---------------------------------------------------------------------

    def score(
        self,
        sentences: Sequence[SentenceInput],
        *,
        bos: bool = True,
        eos: bool = True,
        batch_size: int = 64,
    ) -> list[SentenceScore]:
        """Score sentences given as raw text or as lists of words (already tokenised)."""
        return score_sentences(
            self.engine,
            self.tokenizer,
            self.vocab,
            sentences,
            bos=bos,
            eos=eos,
            batch_size=batch_size,
        )

    def rank(
        self, candidates: Sequence[SentenceInput], **kwargs: Any
    ) -> list[tuple[int, SentenceScore]]:
        """(input index, score) pairs, most probable first: n-best rescoring."""
        scores = self.score(candidates, **kwargs)
        return sorted(enumerate(scores), key=lambda pair: -pair[1].logprob)

    def perplexity(self, text: str) -> float:
        """Per-token perplexity of running text (split into sentences as in training)."""
        sentences = self.tokenizer.sentences(text)
        if not sentences:
            raise ValueError("text has no words to compute a perplexity on")
        scores = self.score(sentences)
        total = sum(s.logprob for s in scores)
        return float(np.exp(-total / sum(len(s.tokens) for s in scores)))

    # -- generation --------------------------------------------------------------------

    def stream(
        self, prompt: SentenceInput | None = None, **options: Any
    ) -> Iterator[GenerationEvent]:
        """Generated tokens one by one (see ``GenerationConfig`` for the options)."""
        allowed = [f.name for f in dataclasses.fields(GenerationConfig)]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"generate: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        config = GenerationConfig(**options)
        prompt_ids = self.vocab.encode(self._prompt_words(prompt))
        if config.method == "beam":
            return beam_events(self.engine, self.vocab, prompt_ids, config)
        return sample_events(self.engine, self.vocab, prompt_ids, config)

    def generate(
        self, prompt: SentenceInput | None = None, **options: Any
    ) -> list[GeneratedSentence]:
        """Whole sentences: ``num_sentences`` samples, or the beam's best first."""
        prompt_words = self._prompt_words(prompt)
        sentences: list[GeneratedSentence] = []
        words: list[str] = []
        logprobs: list[float] = []
        for event in self.stream(prompt, **options):
            if event.token != SENTENCE_END:
                words.append(event.token)
            logprobs.append(event.logprob)
            if event.finish_reason is not None:
                sentences.append(
                    GeneratedSentence(
                        prompt_words,
                        words,
                        logprobs,
                        event.finish_reason,
                        detokenize(prompt_words + words),
                    )
                )
                words, logprobs = [], []
        return sentences

    def _prompt_words(self, prompt: SentenceInput | None) -> list[str]:
        return [] if prompt is None else sentence_words(self.tokenizer, prompt, 0)

    # -- persistence -------------------------------------------------------------------

    def to_bytes(self, *, resumable: bool = False) -> bytes:
        """The checkpoint as bytes. ``resumable`` adds optimizer, RNG and best-epoch state."""
        groups = {"model": self.engine.state_dict()}
        if resumable:
            # A model loaded from a resumable checkpoint and not trained since keeps the
            # state it was loaded with, so that saving it again loses nothing.
            optimizer = self.engine.optimizer_state_dict() or self.resume_tensors.get("optimizer")
            best = (
                self.best_weights
                if self.best_weights is not None
                else self.resume_tensors.get("best")
            )
            groups.update({k: v for k, v in (("optimizer", optimizer), ("best", best)) if v})
        meta = {
            "model_config": self.config.to_dict(),
            "train_config": self.train_config.to_dict() if self.train_config else None,
            "training_state": self.training_state.to_dict() if self.training_state else None,
            "vocab": self.vocab.to_json(),
            "tokenizer": self.tokenizer.to_json(),
        }
        return checkpoint.dumps(groups, meta)

    def save(self, path: str | Path, *, resumable: bool = False) -> None:
        """Write the checkpoint to ``path`` atomically."""
        checkpoint.write_atomic(path, self.to_bytes(resumable=resumable))

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "auto") -> LanguageModel:
        from .training import TrainingState  # training imports this module

        check_device("", device)
        groups, meta = checkpoint.loads(data)
        try:
            config = ModelConfig.from_dict(meta["model_config"])
            train_config = (
                TrainConfig.from_dict(meta["train_config"]) if meta.get("train_config") else None
            )
            vocab = Vocabulary.from_json(meta["vocab"])
            tokenizer = Tokenizer.from_json(meta["tokenizer"])
            state = (
                TrainingState.from_dict(meta["training_state"])
                if meta.get("training_state")
                else None
            )
        except (KeyError, TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"checkpoint metadata is invalid: {err}") from None
        if "model" not in groups:
            raise checkpoint.CheckpointError("checkpoint has no model weights")
        engine = create_engine(config, len(vocab), device=device)
        engine.load_state_dict(groups["model"])
        lm = cls(config, tokenizer, vocab, engine, train_config, state)
        lm.resume_tensors = {k: v for k, v in groups.items() if k != "model"}
        return lm

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> LanguageModel:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ValueError(f"checkpoint file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"checkpoint path {str(path)!r} is a directory, not a file") from None
        return cls.from_bytes(data, device=device)
