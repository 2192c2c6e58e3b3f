"""Request building, error mapping and the retry policy: everything the clients decide
before or after a call, checked without a server."""

from __future__ import annotations

import grpc
import pytest

from rnnlm.client import LMClient, errors
from rnnlm.client._common import (
    MODEL_OPTIONS,
    TRAINING_OPTIONS,
    generate_request,
    parse_option,
    score_request,
    split_options,
    train_request,
)
from rnnlm.client._retry import RetryPolicy
from rnnlm.client.types import Corpus
from rnnlm.v1 import rnnlm_pb2 as pb


class FakeRpcError(grpc.RpcError):
    """What grpc raises for a failed call: an RpcError with code() and details()."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _train(**options):
    return train_request(
        "m",
        "c-1",
        server_path=None,
        format="auto",
        csv_column=None,
        paragraphs="blank-line",
        request_id=None,
        options=options,
    )


# -- training options ----------------------------------------------------------------------


def test_options_are_sorted_into_model_config_and_training_options():
    model, training = split_options(
        {"cell": "gru", "hidden_size": 64, "tie_weights": True, "epochs": 2, "seed": 7}
    )
    assert (model.cell, model.hidden_size, model.tie_weights) == ("gru", 64, True)
    assert (training.epochs, training.seed) == (2, 7)
    assert not model.HasField("vocab_size")  # unset: the server's default
    assert not training.HasField("batch_size")


def test_option_names_come_from_the_descriptors_and_do_not_overlap():
    assert set(MODEL_OPTIONS) == {f.name for f in pb.ModelConfig.DESCRIPTOR.fields}
    assert set(TRAINING_OPTIONS) == {f.name for f in pb.TrainingOptions.DESCRIPTOR.fields}
    assert not set(MODEL_OPTIONS) & set(TRAINING_OPTIONS)


def test_unknown_option_is_named_with_the_allowed_ones():
    with pytest.raises(TypeError) as info:
        split_options({"hiden_size": 64})
    message = str(info.value)
    assert "'hiden_size'" in message
    assert "hidden_size" in message and "epochs" in message


def test_unknown_option_fails_in_the_client_before_any_call():
    with LMClient("127.0.0.1:1") as client, pytest.raises(TypeError, match="bogus"):
        client.train("m", "c-1", bogus=1)


def test_none_disables_clip_and_patience_and_leaves_others_unset():
    model, training = split_options({"clip": None, "patience": None, "hidden_size": None})
    assert training.HasField("clip") and training.clip == 0
    assert training.HasField("patience") and training.patience == 0
    assert not model.HasField("hidden_size")


def test_an_option_of_the_wrong_type_is_named():
    with pytest.raises(TypeError, match="hidden_size"):
        split_options({"hidden_size": "big"})


def test_train_request_corpus_format_paragraphs_and_request_id():
    request = train_request(
        "news",
        Corpus("c-9", "a.csv", 3, "ab", None),
        server_path=None,
        format="csv",
        csv_column="text",
        paragraphs="line",
        request_id="r-1",
        options={"epochs": 1},
    )
    assert request.corpus.corpus_id == "c-9"
    assert request.corpus.format == pb.CORPUS_FORMAT_CSV
    assert request.corpus.csv_column == "text"
    assert request.corpus.paragraphs == pb.PARAGRAPH_MODE_LINE
    assert request.request_id == "r-1"
    # Without one, every request gets a fresh id: what makes retrying Train safe.
    assert _train().request_id and _train().request_id != _train().request_id


def test_train_request_needs_exactly_one_corpus_source():
    with pytest.raises(ValueError, match="exactly one"):
        train_request(
            "m",
            "c-1",
            server_path="x.txt",
            format="auto",
            csv_column=None,
            paragraphs="line",
            request_id=None,
            options={},
        )


def test_bad_enum_word_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="auto, text, csv"):
        train_request(
            "m",
            "c",
            server_path=None,
            format="xml",
            csv_column=None,
            paragraphs="line",
            request_id=None,
            options={},
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hidden_size=64", ("hidden_size", 64)),
        ("dropout=0.25", ("dropout", 0.25)),
        ("tie-weights=true", ("tie_weights", True)),
        ("cell=lstm", ("cell", "lstm")),
        ("seed=12345678901", ("seed", 12345678901)),
    ],
)
def test_command_line_options_get_their_field_types(text, expected):
    assert parse_option(text) == expected


def test_command_line_option_errors():
    with pytest.raises(TypeError, match="unknown training option 'nope'"):
        parse_option("nope=1")
    with pytest.raises(ValueError, match="key=value"):
        parse_option("epochs")
    with pytest.raises(ValueError):
        parse_option("epochs=many")


# -- scoring and generation requests -------------------------------------------------------


def test_score_request_text_and_words():
    request = score_request("m", ["The cat sat.", ["the", "cat"]], rank=True, omit_tokens=True)
    assert request.sentences[0].text == "The cat sat."
    assert list(request.sentences[1].words.words) == ["the", "cat"]
    assert request.rank and request.omit_tokens


def test_score_with_a_bare_string_raises_type_error():
    with pytest.raises(TypeError, match="list of sentences"):
        score_request("m", "the cat sat .", rank=False, omit_tokens=False)
    with LMClient("127.0.0.1:1") as client, pytest.raises(TypeError):
        client.score("m", "the cat sat .")


def test_generate_request_defaults_and_optional_fields():
    kwargs = {
        "num_sentences": 2,
        "min_tokens": 0,
        "max_tokens": 0,
        "top_k": 0,
        "beam_width": 0,
        "temperature": None,
        "top_p": None,
        "method": None,
    }
    plain = generate_request("m", None, seed=None, **kwargs)
    assert plain.WhichOneof("prompt") is None
    assert not plain.HasField("temperature") and not plain.HasField("seed")
    assert plain.method == pb.DECODING_METHOD_UNSPECIFIED

    kwargs.update(temperature=0.5, method="beam")
    full = generate_request("m", ["the", "cat"], seed=0, **kwargs)
    assert list(full.prompt_words.words) == ["the", "cat"]
    assert full.HasField("seed") and full.seed == 0  # seed 0 is a seed, not "unset"
    assert full.temperature == 0.5 and full.method == pb.DECODING_METHOD_BEAM
    assert generate_request("m", "The cat", seed=None, **kwargs).prompt_text == "The cat"
    with pytest.raises(ValueError, match="sample, greedy, beam"):
        generate_request("m", None, seed=None, **{**kwargs, "method": "topk"})


# -- errors ----------------------------------------------------------------------------------


def test_rpc_errors_map_to_their_class_and_message():
    err = errors.from_rpc_error(
        FakeRpcError(grpc.StatusCode.NOT_FOUND, "model 'x' does not exist"), "GetModel"
    )
    assert isinstance(err, errors.NotFound) and isinstance(err, errors.RnnlmError)
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.details == "model 'x' does not exist" and err.method == "GetModel"
    assert str(err) == "NotFound: model 'x' does not exist (GetModel)"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.DATA_LOSS, errors.DataLoss),
        (grpc.StatusCode.CANCELLED, errors.Cancelled),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceeded),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.INTERNAL, errors.Internal),
        (grpc.StatusCode.UNKNOWN, errors.Internal),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Internal),
    ],
)
def test_every_status_code_has_a_class(code, cls):
    err = errors.from_rpc_error(FakeRpcError(code, "why"), "Train")
    assert type(err) is cls
    assert err.code == code  # the catch-all keeps the code it was given


def test_an_rpc_error_without_code_is_internal():
    err = errors.from_rpc_error(grpc.RpcError(), "ListModels")
    assert isinstance(err, errors.Internal) and err.code == grpc.StatusCode.UNKNOWN


# -- retries (what gRPC and the watch do with them: test_retries.py) --------------------------


def test_backoff_is_jittered_and_capped():
    policy = RetryPolicy(retries=10, backoff=1.0, max_backoff=4.0)
    assert policy.delay(0, rng=lambda: 0.0) == 0.5
    assert policy.delay(0, rng=lambda: 1.0) == 1.0
    assert policy.delay(9, rng=lambda: 1.0) == 4.0
