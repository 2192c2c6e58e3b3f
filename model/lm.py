"""``LanguageModel``: a trained engine with its tokenizer and vocabulary, ready to use."""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnlm.model import checkpoint
from rnnlm.model.checks import integer, one_of, read_file
from rnnlm.model.config import ModelConfig, TrainConfig, check_device
from rnnlm.model.decoding import Decoder, EventStream
from rnnlm.model.engines import Engine, create_engine
from rnnlm.model.generation import (
    GeneratedSentence,
    GenerationConfig,
    with_text,
)
from rnnlm.model.interpolation import (
    SCORERS,
    Heldout,
    NgramPart,
    NoNgramPart,
    check_neural_weight,
    check_vocab_overlap,
    fit_part,
    mix,
)
from rnnlm.model.ngram import NgramModel
from rnnlm.model.scoring import (
    SentenceInput,
    SentenceScore,
    SequenceScorer,
    SequenceScores,
    Words,
    neural_token_log_probs,
    rank_scores,
    score_sequences,
    sentence_score,
)
from rnnlm.model.state import TrainingState
from rnnlm.model.stopping import ShouldStop, check
from rnnlm.model.text import Tokenizer
from rnnlm.model.vocab import Vocabulary

_DECODER_LOCK = threading.Lock()  # creates each model's decoding loop once
# The rules checked on every score call, made once.
_SCORER, _BATCH_SIZE = one_of(SCORERS), integer(1)


@dataclass(eq=False)
class LanguageModel:
    """Score and generate sentences; save and load as safetensors + JSON."""

    config: ModelConfig
    tokenizer: Tokenizer
    vocab: Vocabulary
    engine: Engine
    train_config: TrainConfig | None = None
    training_state: TrainingState | None = None
    # Kept only while training or when loaded from a resumable checkpoint.
    best_weights: dict[str, np.ndarray] | None = field(default=None, init=False)
    resume_tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, init=False)
    # The n-gram part (None: the network alone), and the validation sentences its weight
    # was tuned on, kept so that an n-gram model attached later is tuned the same way.
    ngram: NgramPart | None = field(default=None, init=False)
    heldout: Heldout = field(default_factory=lambda: Heldout([], []), init=False)
    _decoder: Decoder | None = field(default=None, init=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"LanguageModel(cell={self.config.cell!r}, vocab={len(self.vocab)}, "
            f"hidden={self.config.hidden_size}, device={self.device!r})"
        )

    @property
    def device(self) -> str:
        """Where the engine runs, e.g. "cpu" or "cuda:0" (the NumPy engine: "cpu")."""
        return str(getattr(self.engine, "device", "cpu"))  # the NumPy engine has none

    # -- scoring ---------------------------------------------------------------------

    def words(self, sentence: SentenceInput, where: str = "sentence") -> Words:
        """The words this model scores for ``sentence``: raw text is tokenised as the
        training corpus was, a list of words (tokenised elsewhere) only case-folded, and
        ``Words`` are returned as they are. Pass the result to ``score``, ``rank``,
        ``stream`` or ``generate`` and nothing is tokenised again. ``where`` names the
        sentence in the ``ValueError`` for anything else."""
        if isinstance(sentence, Words):
            return sentence
        if isinstance(sentence, str):
            return Words(self.tokenizer.words(sentence))
        if isinstance(sentence, Sequence) and all(isinstance(w, str) for w in sentence):
            return Words(self.tokenizer.normalize(sentence))
        raise ValueError(
            f"{where} must be a string or a list of word strings, got {type(sentence).__name__}"
        )

    def score(
        self,
        sentences: Sequence[SentenceInput],
        *,
        bos: bool = True,
        eos: bool = True,
        scorer: str | None = None,
        neural_weight: float | None = None,
        batch_size: int = 64,
        sequence_scorer: SequenceScorer | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[SentenceScore]:
        """Score sentences given as raw text, as lists of words (tokenised elsewhere) or as
        ``Words`` (see ``words``); each is made the model's words once. Results are in input
        order and independent of the batching.

        ``scorer``: 'neural', 'ngram' or 'interpolated' (default: interpolated when the
        model has an n-gram part); ``neural_weight`` overrides the tuned λ.
        ``sequence_scorer`` computes the per-token scores of framed sequences, the network's
        and where it can the n-gram part's (``sequence_scorer``; the server passes its
        batcher). ``should_stop`` is checked between the parts of the work:
        ``stopping.Stopped`` once it returns True.
        """
        if isinstance(sentences, str):
            raise ValueError("sentences must be a list of sentences, not one string")
        if not isinstance(sentences, Sequence):
            raise ValueError(
                f"sentences must be a list of sentences, got {type(sentences).__name__}"
            )
        _BATCH_SIZE.check("batch_size", batch_size)
        scorer, weight = self.scoring_setup(scorer, neural_weight)
        words = []
        for i, sentence in enumerate(sentences):
            check(should_stop)  # NLTK takes ~0.4 us a character: long texts add up
            words.append(list(self.words(sentence, f"sentences[{i}]")))
        framed = [self.vocab.frame(w, bos=bos, eos=eos) for w in words]
        neural: list[np.ndarray] = []
        ngram_logps: list[np.ndarray] = []
        orders: list[np.ndarray | None] = [None] * len(framed)
        ngram_done = scorer == "neural"
        if scorer != "ngram":
            if sequence_scorer is None:
                sequence_scorer = self.sequence_scorer(batch_size, scorer == "interpolated")
            parts = sequence_scorer(framed, should_stop=should_stop)
            neural = [part.neural for part in parts]
            if not ngram_done and all(part.ngram is not None for part in parts):
                # The n-gram part scored with the network's ids, in the same call.
                ngram_logps = [part.ngram for part in parts if part.ngram is not None]
                orders = [part.orders for part in parts]
                ngram_done = True
        if not ngram_done:
            ngram = self.ngram
            assert ngram is not None  # scoring_setup refused it
            check(should_stop)
            ngram_ids = (
                framed if ngram.shares_vocab else [ngram.frame(w, bos=bos, eos=eos) for w in words]
            )
            ngram_logps, matched = ngram.model.token_log_probs(ngram_ids)
            orders = list(matched)
        if scorer == "neural":
            logps = neural
        elif scorer == "ngram":
            logps = ngram_logps
        else:
            logps = [mix(a, b, weight) for a, b in zip(neural, ngram_logps)]
        return [
            sentence_score(w, ids, lp, self.vocab, bos, order)
            for w, ids, lp, order in zip(words, framed, logps, orders)
        ]

    def scoring_setup(
        self, scorer: str | None = None, neural_weight: float | None = None
    ) -> tuple[str, float]:
        """(scorer, the network's weight) that a ``score`` call with these options uses:
        each as asked for (checked), else interpolated when there is an n-gram part, with
        its weight."""
        if scorer in (None, ""):
            scorer = "interpolated" if self.ngram is not None else "neural"
        _SCORER.check("scorer", scorer)
        if scorer != "neural" and self.ngram is None:
            raise NoNgramPart(
                f"scorer {scorer!r} needs an n-gram part, and this model has none (it was trained "
                "with ngram_order 0): use scorer 'neural', or attach an ARPA model"
            )
        if neural_weight is not None:
            return scorer, check_neural_weight(neural_weight)
        return scorer, 1.0 if self.ngram is None else self.ngram.neural_weight

    def sequence_scorer(self, batch_size: int = 64, ngram: bool = True) -> SequenceScorer:
        """The per-token scores of framed sequences (what a batcher calls), as
        ``scorer(sequences, should_stop=None)`` -> ``scoring.SequenceScores`` each: the
        network's, and with ``ngram`` the n-gram part's too where it numbers words as the
        network does (an ARPA part with a vocabulary of its own is scored in ``score``)."""
        return functools.partial(self._score_sequences, batch_size=batch_size, ngram=ngram)

    def _score_sequences(
        self,
        sequences: Sequence[np.ndarray],
        batch_size: int,
        ngram: bool,
        should_stop: ShouldStop | None = None,
    ) -> list[SequenceScores]:
        part = self.ngram  # read at each call: the part attached now, if any
        shared = part.model if ngram and part is not None and part.shares_vocab else None
        return score_sequences(self.engine, shared, sequences, batch_size, should_stop)

    def rank(
        self,
        candidates: Sequence[SentenceInput],
        *,
        length_norm: str = "none",
        length_alpha: float | None = None,
        **kwargs: Any,
    ) -> list[tuple[int, SentenceScore]]:
        """(input index, score) pairs, most probable first: n-best rescoring, ranked as
        ``scoring.rank_scores`` ranks (which gives the rank scores too)."""
        ranked = rank_scores(self.score(candidates, **kwargs), length_norm, length_alpha)
        return [(r.index, r.score) for r in ranked]

    def perplexity(self, text: str, **kwargs: Any) -> float:
        """Per-token perplexity of running text (split into sentences as in training);
        ``scorer`` and ``neural_weight`` as for ``score``."""
        sentences = self.tokenizer.sentences(text)
        if not sentences:
            raise ValueError("text has no words to compute a perplexity on")
        scores = self.score(sentences, **kwargs)
        total = sum(s.logprob for s in scores)
        return float(np.exp(-total / sum(len(s.tokens) for s in scores)))

    # -- generation --------------------------------------------------------------------

    def stream(
        self,
        prompt: SentenceInput | None = None,
        should_stop: ShouldStop | None = None,
        **options: Any,
    ) -> EventStream:
        """Generated tokens one by one (see ``GenerationConfig`` for the options); each
        sentence's last event carries its text (prompt and words, detokenised).
        ``should_stop`` is checked before every decoding step: ``stopping.Stopped``.
        ``ready()`` on the stream: how many can be taken without waiting."""
        config = GenerationConfig.from_options(options)
        prompt_words = self._prompt_words(prompt)
        events = self.decoder.submit(self.vocab.encode(prompt_words), config, should_stop)
        return events.through(lambda inner: with_text(inner, prompt_words))

    def quantize(self) -> LanguageModel:
        """Serve this model with int8 weights (float32 gru/lstm on the CPU; dynamic quantization):
        faster scoring and decoding for slightly different scores (bench/bench_quantize.py
        measures both). Saving keeps the float weights. Returns the model."""
        refusal = self.int8_refusal()
        if refusal is not None:
            raise ValueError(refusal)
        self.engine.quantize()  # type: ignore[attr-defined]  # a torch engine: int8_refusal
        return self

    def int8_refusal(self) -> str | None:
        """Why ``quantize`` would refuse this model (a NumPy ``rnn``, a GPU or float64
        model), or None."""
        refusal = getattr(self.engine, "int8_refusal", None)
        if refusal is None:
            return (
                f"int8 quantization needs a 'gru' or 'lstm' model; this one is {self.config.cell!r}"
            )
        return refusal()

    @property
    def decoder(self) -> Decoder:
        """The model's decoding loop: every generation in progress, whichever thread asked
        for it, advances in one batched step (continuous batching, decoding.py)."""
        with _DECODER_LOCK:
            if self._decoder is None or self._decoder.engine is not self.engine:
                self._decoder = Decoder(self.engine, self.vocab)
            return self._decoder

    def generate(
        self, prompt: SentenceInput | None = None, **options: Any
    ) -> list[GeneratedSentence]:
        """Whole sentences: ``num_sentences`` samples, or the beam's best first."""
        prompt_words = self._prompt_words(prompt)
        events = self.stream(prompt_words, **options)
        return [
            GeneratedSentence.from_events(list(prompt_words), list(sentence_events))
            for _, sentence_events in itertools.groupby(events, key=lambda e: e.sentence)
        ]

    def _prompt_words(self, prompt: SentenceInput | None) -> Words:
        return Words() if prompt is None else self.words(prompt, "prompt")

    # -- the n-gram part ----------------------------------------------------------------

    def attach_ngram(
        self, model: NgramModel, source: str, neural_weight: float | None = None
    ) -> NgramPart:
        """Make ``model`` the n-gram part; its weight is tuned on the held-out sentences
        kept with this model (or ``neural_weight`` is taken as given)."""
        part = NgramPart(model, source)
        check_vocab_overlap(part, self.vocab)
        if neural_weight is None and not self.heldout.sequences:
            raise NoNgramPart(
                "this model kept no held-out sentences to tune the weight on (trained with "
                "valid_fraction 0, or before held-out text was kept); give neural_weight"
            )
        neural = neural_token_log_probs(self.engine, self.heldout.network_ids(self.vocab))
        ngram, _ = model.token_log_probs(self.heldout.ngram_ids(part, self.vocab))
        self.ngram = fit_part(part, neural, ngram, neural_weight)
        return self.ngram

    # -- persistence -------------------------------------------------------------------

    def to_bytes(self, *, resumable: bool = False) -> bytes:
        """The checkpoint as bytes. ``resumable`` adds optimizer, RNG and best-epoch state."""
        groups = {"model": self.engine.state_dict()}
        if resumable:
            # A model loaded from a resumable checkpoint and not trained since keeps the
            # state it was loaded with, so that saving it again loses nothing.
            optimizer = self.engine.optimizer_state_dict() or self.resume_tensors.get("optimizer")
            best = self.best_weights or self.resume_tensors.get("best")
            groups.update({k: v for k, v in (("optimizer", optimizer), ("best", best)) if v})
        if self.ngram is not None:
            groups["ngram"] = self.ngram.model.to_tensors()
        heldout_words: list[str] = []
        if self.heldout.sequences:
            groups["heldout"], heldout_words = self.heldout.to_checkpoint()
        meta = {
            "ngram": self.ngram.to_meta(self.vocab) if self.ngram is not None else None,
            "heldout_words": heldout_words,
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
        """A model from checkpoint bytes (``to_bytes``), on ``device`` ("auto": CUDA when
        present). Raises ``CheckpointError`` for bytes that are not a valid checkpoint."""
        check_device("", device)
        groups, meta = checkpoint.loads(data)
        try:
            config = ModelConfig.from_stored(meta["model_config"])
            stored_train, stored_state = meta.get("train_config"), meta.get("training_state")
            train_config = TrainConfig.from_dict(stored_train) if stored_train else None
            state = TrainingState.from_dict(stored_state) if stored_state else None
            vocab = Vocabulary.from_json(meta["vocab"])
            tokenizer = Tokenizer.from_json(meta["tokenizer"])
        except (KeyError, TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"checkpoint metadata is invalid: {err}") from None
        if "model" not in groups:
            raise checkpoint.CheckpointError("checkpoint has no model weights")
        engine = create_engine(config, len(vocab), device=device)
        engine.load_state_dict(groups["model"])
        lm = cls(config, tokenizer, vocab, engine, train_config, state)
        try:
            if meta.get("ngram"):
                lm.ngram = NgramPart.from_checkpoint(meta["ngram"], groups.get("ngram", {}), vocab)
            if "heldout" in groups:
                words = meta.get("heldout_words") or []
                lm.heldout = Heldout.from_checkpoint(groups["heldout"], words, len(vocab))
        except (KeyError, TypeError, ValueError) as err:
            raise checkpoint.CheckpointError(f"checkpoint n-gram part is invalid: {err}") from None
        lm.resume_tensors = {
            k: v for k, v in groups.items() if k not in ("model", "ngram", "heldout")
        }
        return lm

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> LanguageModel:
        """A model from a checkpoint file (``save``); ``device`` as for ``from_bytes``."""
        return cls.from_bytes(read_file(path, "checkpoint"), device=device)
