"""Bad configurations are refused with ValueError naming the field and what is allowed."""

import pytest

from rnnlm.model import Corpus, ModelConfig, TrainConfig, train
from rnnlm.model.generation import GenerationConfig


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"hidden_size": 0}, ["hidden_size", ">= 1", "0"]),
        ({"vocab_size": 3}, ["vocab_size", ">= 4", "3"]),
        ({"cell": "transformer"}, ["cell", "'gru'", "'lstm'", "'rnn'", "transformer"]),
        ({"embed_size": -2}, ["embed_size", ">= 1"]),
        ({"num_layers": 0}, ["num_layers", ">= 1"]),
        ({"dropout": 1.0}, ["dropout", "[0.0, 1.0)"]),
        ({"activation": "sigmoid"}, ["activation", "'tanh'", "'relu'"]),
        ({"dtype": "float16"}, ["dtype", "'float32'", "'float64'"]),
        ({"cell": "rnn", "num_layers": 2}, ["num_layers", "'rnn'"]),
        ({"cell": "rnn", "dropout": 0.5}, ["dropout", "'rnn'"]),
        ({"embed_dropout": 1.0}, ["embed_dropout", "[0.0, 1.0)"]),
        ({"embed_dropout": -0.1}, ["embed_dropout", "[0.0, 1.0)"]),
        ({"cell": "rnn", "embed_dropout": 0.1}, ["embed_dropout", "must be 0", "'rnn'"]),
        ({"cell": "rnn", "tie_weights": True}, ["tie_weights", "'gru' and 'lstm'"]),
        ({"tie_weights": "yes"}, ["tie_weights", "true or false"]),
        ({"cell": "gru", "activation": "relu"}, ["activation", "'rnn'"]),
        (
            {"cell": "gru", "tie_weights": True, "embed_size": 8, "hidden_size": 16},
            ["tie_weights", "embed_size == hidden_size"],
        ),
        ({"hidden_size": 2.5}, ["hidden_size", "integer"]),
    ],
)
def test_bad_model_config(kwargs, words):
    with pytest.raises(ValueError) as err:
        ModelConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"learning_rate": -0.1}, ["learning_rate", "(0.0, inf)", "-0.1"]),
        ({"learning_rate": 0}, ["learning_rate"]),
        ({"optimizer": "lbfgs"}, ["optimizer", "'sgd'", "'rmsprop'", "'adam'", "'adamw'"]),
        ({"weight_decay": -0.01}, ["weight_decay", "[0.0, inf)", "-0.01"]),
        ({"weight_decay": float("nan")}, ["weight_decay"]),
        ({"lr_patience": 0}, ["lr_patience", ">= 1"]),
        ({"lr_patience": None}, ["lr_patience", "integer"]),
        ({"epochs": 0}, ["epochs", ">= 1"]),
        ({"batch_size": 0}, ["batch_size", ">= 1"]),
        ({"clip": 0}, ["clip"]),
        ({"bptt_truncate": 0}, ["bptt_truncate", ">= 1"]),
        ({"valid_fraction": 0.9}, ["valid_fraction", "[0.0, 0.5]"]),
        ({"device": "tpu"}, ["device", "'auto'", "'cpu'", "'cuda'"]),
        ({"lr_decay": 0}, ["lr_decay"]),
        ({"patience": 0}, ["patience"]),
        ({"seed": -1}, ["seed"]),
    ],
)
def test_bad_train_config(kwargs, words):
    with pytest.raises(ValueError) as err:
        TrainConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_bptt_truncate_is_refused_for_torch_cells(pydoc_corpus):
    with pytest.raises(ValueError, match="bptt_truncate applies to cell 'rnn' only"):
        train(pydoc_corpus, ModelConfig(cell="gru"), TrainConfig(bptt_truncate=4))


@pytest.mark.parametrize("text", ["", "   \n\t  \n"])
def test_empty_corpus(text):
    with pytest.raises(ValueError, match="corpus is empty or only whitespace"):
        Corpus.from_text(text)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait.".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid UTF-8 \(byte 3"):
        Corpus.from_file(path)


def test_missing_file_and_csv_column(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Corpus.from_file(tmp_path / "nope.txt")
    path = tmp_path / "c.csv"
    path.write_text("id,text\n1,hello there.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no column 'body'; columns found: id, text"):
        Corpus.from_file(path)


def test_config_dicts_round_trip_and_refuse_unknown_fields():
    config = ModelConfig(cell="lstm", num_layers=2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown field.*hiden_size"):
        ModelConfig.from_dict({"hiden_size": 3})
    assert TrainConfig.from_dict(TrainConfig(epochs=3).to_dict()).epochs == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "nucleus"}, "method"),
        ({"temperature": 0}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"max_length": 0}, "max_length"),
        ({"min_length": 5, "max_length": 3}, "min_length"),
        ({"beam_width": -1}, "beam_width"),
        ({"num_sentences": 0}, "num_sentences"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_generation_options(kwargs, field):
    with pytest.raises(ValueError, match=f"generate: {field} must be"):
        GenerationConfig(**kwargs)
