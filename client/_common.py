"""Protobuf requests built from Python arguments, the corpus upload plan and the channel
settings: the helpers of ``ClientCore`` (``_core``) and the CLI.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor

from rnnlm.client.errors import RnnlmError
from rnnlm.client.types import Corpus, enum_prefix
from rnnlm.v1 import rnnlm_pb2 as pb

if TYPE_CHECKING:  # in the stubs only
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

V = TypeVar("V", bound=int)

DEFAULT_TARGET = "localhost:50051"
API_KEY_HEADER = "x-api-key"

# Train(**options): every field of ModelConfig and TrainingOptions, read from the descriptors
# so that a field added to the proto is accepted without touching the client.
MODEL_OPTIONS: tuple[str, ...] = tuple(f.name for f in pb.ModelConfig.DESCRIPTOR.fields)
TRAINING_OPTIONS: tuple[str, ...] = tuple(f.name for f in pb.TrainingOptions.DESCRIPTOR.fields)
_FIELDS: dict[str, FieldDescriptor] = {
    **pb.TrainingOptions.DESCRIPTOR.fields_by_name,
    **pb.ModelConfig.DESCRIPTOR.fields_by_name,
}
# The proto says 0 disables these; in Python "disabled" reads naturally as None.
_NONE_MEANS_ZERO = frozenset({"clip", "patience", "bptt_truncate"})


@dataclass(frozen=True)
class TLS:
    """TLS settings of a client. ``LMClient(target, tls=True)`` trusts the system's CAs;
    ``tls=TLS(ca_file="ca.pem")`` trusts that CA (a private one); ``cert_file`` and
    ``key_file`` present a client certificate (servers started with ``--tls-client-ca``);
    ``server_name`` overrides the name checked against the server's certificate (when the
    target is an IP address or a name the certificate does not list)."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("TLS cert_file and key_file go together: give both or neither")

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            read(self.ca_file), read(self.key_file), read(self.cert_file)
        )


def channel_security(tls: bool | TLS, credentials: Any, options: list) -> tuple[Any, list]:
    """The channel credentials (None: plaintext) and options for ``tls``/``credentials``."""
    if credentials is not None or tls is False:
        return credentials, options
    settings = TLS() if tls is True else tls
    if settings.server_name:
        options = [*options, ("grpc.ssl_target_name_override", settings.server_name)]
    return settings.credentials(), options


def enum_value(enum_type: _EnumTypeWrapper[V], name: str, what: str) -> V:
    """A lowercase word ("csv", "blank-line", "beam") to its enum value; ValueError lists
    the words allowed."""
    prefix = enum_prefix(enum_type.DESCRIPTOR)
    allowed = {
        n.removeprefix(prefix).lower().replace("_", "-"): v
        for n, v in enum_type.items()
        if not n.endswith("_UNSPECIFIED")
    }
    key = str(name).lower().replace("_", "-")
    if key not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {name!r}")
    return allowed[key]


# ---------------------------------------------------------------------------------------
# Training


def split_options(options: Mapping[str, Any]) -> tuple[pb.ModelConfig, pb.TrainingOptions]:
    """Sort keyword options into ModelConfig and TrainingOptions by their field names.

    ``None`` leaves a field unset (the server's default), except for ``clip``, ``patience``
    and ``bptt_truncate``, where it sends 0, the proto's "disabled".
    """
    model, training = pb.ModelConfig(), pb.TrainingOptions()
    for name, value in options.items():
        if name not in _FIELDS:
            raise _unknown_option(name)
        target = model if name in MODEL_OPTIONS else training
        if value is None:
            if name not in _NONE_MEANS_ZERO:
                continue
            value = 0
        try:
            if _FIELDS[name].is_repeated:  # adaptive_cutoffs=[2000, 10000]
                getattr(target, name).extend(value)
            else:
                setattr(target, name, value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"training option {name}={value!r}: {err}") from None
    return model, training


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` from the command line, the value converted to the field's type."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise ValueError(f"option {text!r} is not key=value")
    if name not in _FIELDS:
        raise _unknown_option(name)
    convert, value = option_type(name), raw.strip()
    try:
        return name, convert(value)
    except ValueError:
        kinds = {int: "a whole number", float: "a number", _int_list: "comma-separated integers"}
        kind = kinds.get(convert, "true or false")
        raise ValueError(f"option {name} must be {kind}, got {value[:20]!r}") from None


def _unknown_option(name: str) -> TypeError:
    return TypeError(
        f"unknown training option {name!r}; model options: {', '.join(MODEL_OPTIONS)}; "
        f"training options: {', '.join(TRAINING_OPTIONS)}"
    )


def option_type(name: str) -> Any:
    """A converter from a command-line string to the type of option ``name``'s field (a
    repeated field: a comma-separated list, "2000,10000")."""
    if _FIELDS[name].is_repeated:
        return _int_list
    cpp = _FIELDS[name].cpp_type
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return float
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return _parse_bool
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        return str
    return int


def _int_list(text: str) -> list[int]:
    """ "2000,10000" -> [2000, 10000]; ValueError for anything else."""
    return [int(part) for part in text.split(",") if part.strip()]


def _parse_bool(text: str) -> bool:
    word = text.lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def train_request(
    model_id: str,
    corpus: Corpus | str | None,
    *,
    server_path: str | None,
    format: str,
    csv_column: str | None,
    paragraphs: str,
    request_id: str | None,
    options: Mapping[str, Any],
    arpa_id: str = "",
    validate_only: bool = False,
) -> pb.TrainRequest:
    given = (corpus is not None) + (server_path is not None)
    if given > 1 or (given == 0 and not validate_only):
        raise ValueError(
            "give exactly one of corpus (an uploaded corpus or its id) and server_path"
        )
    source = pb.CorpusSource(
        format=enum_value(pb.CorpusFormat, format, "format"),
        csv_column=csv_column or "",
        paragraphs=enum_value(pb.ParagraphMode, paragraphs, "paragraphs"),
    )
    if server_path is not None:
        source.server_path = str(server_path)
    elif corpus is not None:
        source.corpus_id = corpus.corpus_id if isinstance(corpus, Corpus) else str(corpus)
    model, training = split_options(options)
    # A request id makes Train idempotent: a retry after UNAVAILABLE gets the same job.
    return pb.TrainRequest(
        model_id=model_id,
        corpus=source,
        model=model,
        training=training,
        request_id=request_id or uuid.uuid4().hex,
        arpa_id=arpa_id,
        validate_only=validate_only,
    )


# ---------------------------------------------------------------------------------------
# N-gram models (ARPA files)


#: An ARPA file: its path or bytes (uploaded first), or an uploaded Corpus.
Arpa = str | Path | bytes | Corpus


def attach_request(
    model_id: str, arpa_id: str, neural_weight: float | None
) -> pb.AttachNgramModelRequest:
    request = pb.AttachNgramModelRequest(model_id=model_id, arpa_id=arpa_id)
    if neural_weight is not None:
        request.neural_weight = neural_weight
    return request


# ---------------------------------------------------------------------------------------
# Scoring and generation


def _words(value: Sequence[str], what: str) -> pb.Words:
    if not all(isinstance(w, str) for w in value):
        raise TypeError(f"{what}: a sentence is a str or a sequence of str words; got {value!r}")
    return pb.Words(words=list(value))


@dataclass(frozen=True)
class ScoreOptions:
    """How ScoreSentence scores; None leaves a field to the server's default.

    ``scorer``: "neural", "ngram" or "interpolated" (default: interpolated when the model
    has an n-gram part), with the network's ``neural_weight`` in [0, 1]. ``bos`` False
    scores a fragment (its first word is context only); ``eos`` False leaves out the end of
    the sentence. ``length_norm`` ("none", "average" or "gnmt", with ``length_alpha``)
    sets ``rank_score``, which ``rank`` sorts by.
    """

    scorer: str | None = None
    neural_weight: float | None = None
    bos: bool | None = None
    eos: bool | None = None
    length_norm: str | None = None
    length_alpha: float | None = None
    allow_empty: bool | None = None  # score a sentence without words (an empty hypothesis)

    def apply(self, request: pb.ScoreSentenceRequest) -> None:
        if self.scorer is not None:
            request.scorer = enum_value(pb.Scorer, self.scorer, "scorer")
        if self.length_norm is not None:
            request.length_norm = enum_value(pb.LengthNorm, self.length_norm, "length_norm")
        for name in ("neural_weight", "bos", "eos", "length_alpha", "allow_empty"):
            if (value := getattr(self, name)) is not None:
                setattr(request, name, value)


#: Sentences a ScoreSentence request carries at most: the server's default limit
#: (``--max-sentences-per-request``); longer inputs are split into requests of this size.
SENTENCES_PER_REQUEST = 256


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a whole number >= 1 (sentences per request; default "
            f"{SENTENCES_PER_REQUEST}), got {batch_size!r}"
        )


@contextmanager
def shifted_indices(offset: int) -> Iterator[None]:
    """Inside one request of a split input: an error naming ``sentences[i]`` names the
    sentence's place in the whole input, ``sentences[i + offset]``."""
    try:
        yield
    except RnnlmError as err:
        err.details = re.sub(
            r"sentences\[(\d+)\]", lambda m: f"sentences[{int(m[1]) + offset}]", err.details
        )
        err.args = (err.details,)
        raise


def score_request(
    model_id: str,
    sentences: Sequence[str | Sequence[str]],
    rank: bool,
    omit_tokens: bool,
    options: ScoreOptions | None = None,
) -> pb.ScoreSentenceRequest:
    """A str is raw text; a sequence of str is words already tokenised."""
    if isinstance(sentences, (str, bytes)):
        raise TypeError("sentences must be a list of sentences; for one, pass [sentence]")
    request = pb.ScoreSentenceRequest(model_id=model_id, rank=rank, omit_tokens=omit_tokens)
    if options is not None:
        options.apply(request)
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, str):
            request.sentences.add(text=sentence)
        else:
            request.sentences.add(words=_words(sentence, f"sentences[{i}]"))
    return request


#: Tokens a GenerateResponse may carry (``max_tokens_per_message``): the server packs those
#: it has ready into one message, so that many streams at once keep up with the model.
TOKENS_PER_MESSAGE = 64


def generate_request(
    model_id: str, prompt: str | Sequence[str] | None, *, method: str | None, **fields: Any
) -> pb.GenerateRequest:
    """``fields`` as GenerateRequest names them; 0 and None mean "the server's default"."""
    request = pb.GenerateRequest(model_id=model_id, **fields)  # None leaves a field unset
    if method is not None:
        request.method = enum_value(pb.DecodingMethod, method, "method")
    if isinstance(prompt, str):
        request.prompt_text = prompt
    elif prompt is not None:
        request.prompt_words.CopyFrom(_words(prompt, "prompt"))
    return request
