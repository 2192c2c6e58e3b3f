"""Model and training configuration: plain dataclasses, validated on construction
(``ValueError`` naming the field, what is allowed and the value given; see checks.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from rnnlm.model.checks import (
    BOOLEAN,
    Rule,
    check_fields,
    integer,
    number,
    one_of,
    quote,
    refuse_unknown,
)

CELLS = ("gru", "lstm", "rnn")
ACTIVATIONS = ("tanh", "relu")
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
DTYPES = ("float32", "float64")
# How training text becomes sentences ("auto" picks "split" or "line" from the corpus's layout)
# and how sentences become words; see model/text.py.
SENTENCE_MODES = ("auto", "split", "line")
WORD_MODES = ("nltk", "whitespace")
# Learning rates that train a sentence-level LM well with a per-token mean loss (adamw's
# 0.01 measured better than 0.005 both for a 256 GRU over 6 epochs and a 64 GRU over 3).
DEFAULT_LEARNING_RATES = {"sgd": 0.5, "rmsprop": 0.005, "adam": 0.005, "adamw": 0.01}
# Weight decay when none is given: AdamW's decay is decoupled (shrinks weights by
# lr * decay per step) and is the point of choosing it; for the others it is an L2 term in
# the gradient, which adaptive optimizers rescale per weight, so it stays off by default.
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "rmsprop": 0.0, "adam": 0.0, "adamw": 0.1}
# gru/lstm dropout when none is given (the NumPy rnn has none); measured in docs/model.md.
DEFAULT_DROPOUT = 0.3
MAX_NGRAM_ORDER = 6
MIN_VOCAB_SIZE = 4  # the three special tokens and at least one word
# From this vocab_size on the default output layer is factored into word classes.
AUTO_CLASSES_MIN_VOCAB = 1000


# Whether CUDA is there is checked when the device is used.
_DEVICE = Rule(
    "'auto', 'cpu', 'cuda' or 'cuda:N'",
    lambda d: (
        isinstance(d, str)
        and (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit()))
    ),
)


def check_device(owner: str, device: Any) -> None:
    _DEVICE.check(f"{owner}device", device)


_Config = TypeVar("_Config", bound="_DictConfig")


class _DictConfig:
    """JSON-friendly round trip for the config dataclasses."""

    # Set by @dataclass on each subclass; declared so that type checkers see a dataclass.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[_Config], data: dict[str, Any]) -> _Config:
        """Build from a dict (e.g. parsed JSON), refusing unknown keys by name."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        known = sorted(f.name for f in dataclasses.fields(cls))
        refuse_unknown(cls.__name__, "field", data, known)
        return cls(**data)


# Each field on its own (None where it is resolved on construction); what depends on the
# cell is checked in ModelConfig.__post_init__.
_MODEL_RULES = {
    "cell": one_of(CELLS),
    "vocab_size": integer(MIN_VOCAB_SIZE),
    "embed_size": integer(1),
    "hidden_size": integer(1),
    "num_layers": integer(1),
    "dropout": number("[0.0, 1.0)").passing(None),
    "embed_dropout": number("[0.0, 1.0)"),
    "tie_weights": BOOLEAN.passing(None),
    "activation": one_of(ACTIVATIONS),
    "lowercase": BOOLEAN,
    "dtype": one_of(DTYPES),
    "sentences": one_of(SENTENCE_MODES),
    "words": one_of(WORD_MODES),
    "min_count": integer(1),
    "ngram_order": integer(1, MAX_NGRAM_ORDER).passing(0).noting("0: none"),
    "output_classes": integer(2).passing(0, None),  # 0: the full softmax
    "adaptive_cutoffs": Rule(
        "a list of increasing integers >= 1 (word ranks; empty: no adaptive softmax)",
        lambda v: (
            isinstance(v, (list, tuple))
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in v)
            and all(a < b for a, b in itertools.pairwise(v))
        ),
    ),
}


@dataclass(frozen=True)
class ModelConfig(_DictConfig):
    """What the model is: everything needed to rebuild it from its weights.

    ``embed_size``, ``num_layers``, ``dropout``, ``embed_dropout`` and ``tie_weights`` apply
    to ``gru`` and ``lstm``; ``activation`` and ``dtype="float64"`` are for the NumPy ``rnn``,
    whose input matrix ``U`` maps a one-hot word straight to the hidden state, as in the
    tutorial. ``dropout=None`` and ``tie_weights=None`` are resolved on construction (see
    ``_resolve_defaults``), so a stored config always says what the model used.
    """

    cell: str = "gru"
    vocab_size: int = 8000  # at most this many tokens, the three special tokens included
    embed_size: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float | None = None  # variational (a mask per sentence); None: DEFAULT_DROPOUT
    embed_dropout: float = 0.0  # share of words whose embedding is dropped (whole rows)
    tie_weights: bool | None = None  # None: tie when embed_size == hidden_size (gru/lstm)
    activation: str = "tanh"
    lowercase: bool = True
    dtype: str = "float32"
    sentences: str = "auto"  # SENTENCE_MODES
    words: str = "nltk"  # WORD_MODES
    min_count: int = 2  # rarer training words are UNKNOWN_TOKEN, so that UNKNOWN_TOKEN is trained
    ngram_order: int = 4  # Kneser-Ney n-gram part trained with the network; 0: none
    output_classes: int | None = None  # 0: full softmax; C: C word classes; None: auto
    # gru/lstm: an adaptive softmax with these cut-offs (word ranks by frequency); () none.
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        owner = "model_config"
        check_fields(self, _MODEL_RULES, f"{owner}.")
        # A list (JSON, the wire) and a tuple are the same configuration.
        object.__setattr__(self, "adaptive_cutoffs", tuple(self.adaptive_cutoffs))
        self._check_adaptive(owner)
        self._resolve_defaults()
        if self.cell == "rnn":
            if self.num_layers != 1:
                raise ValueError(
                    f"{owner}.num_layers must be 1 for cell 'rnn' "
                    f"(more layers need 'gru' or 'lstm'), got {self.num_layers}"
                )
            for name in ("dropout", "embed_dropout"):
                if getattr(self, name) != 0.0:
                    raise ValueError(
                        f"{owner}.{name} must be 0 for cell 'rnn' "
                        f"(dropout needs 'gru' or 'lstm'), got {getattr(self, name)}"
                    )
            if self.tie_weights:
                raise ValueError(f"{owner}.tie_weights is only allowed for 'gru' and 'lstm'")
        else:
            if self.activation != "tanh":
                raise ValueError(
                    f"{owner}.activation applies to cell 'rnn' only; "
                    f"'{self.cell}' has fixed gates, got {self.activation!r}"
                )
            if self.tie_weights and self.embed_size != self.hidden_size:
                raise ValueError(
                    f"{owner}.tie_weights needs embed_size == hidden_size, "
                    f"got {self.embed_size} and {self.hidden_size}"
                )

    def _check_adaptive(self, owner: str) -> None:
        """The adaptive softmax is a third output layer: not with word classes, not tied."""
        cutoffs = self.adaptive_cutoffs
        if not cutoffs:
            return
        if self.cell == "rnn":
            raise ValueError(
                f"{owner}.adaptive_cutoffs applies to 'gru' and 'lstm'; the NumPy rnn's "
                "fast output layer is output_classes"
            )
        if self.output_classes:
            raise ValueError(
                f"{owner}.adaptive_cutoffs and output_classes are two output layers: "
                f"give one (output_classes 0 with adaptive_cutoffs), got {self.output_classes}"
            )
        if self.tie_weights:
            raise ValueError(
                f"{owner}.tie_weights needs the full or class softmax: the adaptive "
                "softmax's clusters have weights of their own (leave tie_weights unset)"
            )
        if cutoffs[-1] >= self.vocab_size:
            raise ValueError(
                f"{owner}.adaptive_cutoffs must all be below vocab_size ({self.vocab_size}), "
                f"got {quote(list(cutoffs))}"
            )

    def _resolve_defaults(self) -> None:
        """Defaults that depend on the cell and sizes (the NumPy rnn has neither dropout nor
        tying); object.__setattr__ because the dataclass is frozen."""
        torch_cell = self.cell != "rnn"
        if self.dropout is None:
            object.__setattr__(self, "dropout", DEFAULT_DROPOUT if torch_cell else 0.0)
        if self.tie_weights is None:
            # Tying costs nothing and helps where the sizes allow it (Press & Wolf 2017).
            tie = torch_cell and self.embed_size == self.hidden_size and not self.adaptive_cutoffs
            object.__setattr__(self, "tie_weights", tie)
        if self.output_classes is None:
            classes = 0 if self.adaptive_cutoffs else auto_output_classes(self)
            object.__setattr__(self, "output_classes", classes)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ModelConfig:
        """A config read back from a checkpoint or job record: a field written before it
        existed means what the model was trained with then (``STORED_BEFORE``), not
        today's default."""
        if not isinstance(data, dict):
            return cls.from_dict(data)  # refused there, with the reason
        return cls.from_dict({**STORED_BEFORE, **data})


# Fields added after models were first stored, with the value that older models used.
STORED_BEFORE: dict[str, Any] = {"min_count": 1, "ngram_order": 0, "output_classes": 0}


def auto_output_classes(config: ModelConfig) -> int:
    """The default output layer: a full softmax for small vocabularies, where it is cheap,
    else about sqrt(vocab_size) word classes (docs/model.md, "Class-factored output": 3.4x
    faster n-best scoring for 1.7% more perplexity on WikiText-2)."""
    if config.cell == "rnn" or config.vocab_size < AUTO_CLASSES_MIN_VOCAB:
        return 0
    return round(math.sqrt(config.vocab_size))


_TRAIN_RULES = {
    "epochs": integer(1),
    "batch_size": integer(1),
    "learning_rate": number("(0.0, inf)").passing(None),
    "optimizer": one_of(OPTIMIZERS),
    "clip": number("(0.0, inf)").passing(None),
    "bptt_truncate": integer(1).passing(None),
    "weight_decay": number("[0.0, inf)").passing(None),
    "lr_decay": number("(0.0, 1.0]"),
    "lr_patience": integer(1),
    "valid_fraction": number("[0.0, 0.5]"),
    "patience": integer(1).passing(None),
    "max_length": integer(2),
    "seed": integer(0),
    "device": _DEVICE,
    "log_every": integer(1).passing(None),
    "checkpoint_every": integer(1).passing(None),
    "processes": integer(1),
}


@dataclass(frozen=True)
class TrainConfig(_DictConfig):
    """How to train: optimisation, batching, validation, checkpoints and progress."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[optimizer]
    optimizer: str = "adamw"  # best measured with dropout (docs/model.md); tutorial: rmsprop
    clip: float | None = 5.0  # max global gradient norm; None disables clipping
    bptt_truncate: int | None = None  # cell 'rnn' only: steps back per loss term; None = full
    weight_decay: float | None = None  # None: DEFAULT_WEIGHT_DECAY[optimizer]
    lr_decay: float = 0.5  # learning rate multiplier on a plateau; 1 disables
    lr_patience: int = 1  # epochs without a new best validation loss before lr_decay applies
    valid_fraction: float = 0.1  # share of sentences held out for validation perplexity
    patience: int | None = 3  # epochs without validation improvement before stopping
    max_length: int = 100  # longer sentences are cut into windows of this many tokens
    seed: int = 0
    device: str = "auto"  # 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'
    log_every: int | None = None  # steps between progress events; None: about every 2 s
    checkpoint_every: int | None = None  # steps between on_checkpoint calls
    # Data-parallel processes on this host (gru/lstm; each trains on its share of every
    # batch, so batch_size stays the global batch); several hosts: torchrun, see
    # docs/deployment.md.
    processes: int = 1

    def __post_init__(self) -> None:
        check_fields(self, _TRAIN_RULES, "train_config.")

    @property
    def effective_learning_rate(self) -> float:
        rate = self.learning_rate
        return DEFAULT_LEARNING_RATES[self.optimizer] if rate is None else float(rate)

    @property
    def effective_weight_decay(self) -> float:
        decay = self.weight_decay
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if decay is None else float(decay)

    def check_compatible(self, model: ModelConfig) -> None:
        """Options that only some engines understand are refused, not silently ignored."""
        if self.bptt_truncate is not None and model.cell != "rnn":
            raise ValueError(
                "train_config.bptt_truncate applies to cell 'rnn' only "
                f"(the hand-written BPTT); got cell {model.cell!r}"
            )
        if self.processes > 1 and model.cell == "rnn":
            raise ValueError(
                "train_config.processes must be 1 for cell 'rnn': the NumPy engine trains in "
                f"one process (data-parallel training needs 'gru' or 'lstm'), got {self.processes}"
            )
        if self.processes > self.batch_size:
            raise ValueError(
                f"train_config.processes ({self.processes}) must be at most batch_size "
                f"({self.batch_size}): each process trains on its share of every batch"
            )
