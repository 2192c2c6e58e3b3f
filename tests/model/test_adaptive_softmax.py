"""The adaptive softmax (``adaptive_cutoffs``, gru/lstm): configuration, normalisation,
agreement of its scoring, prefix-tree and decoding paths, training, checkpoints, int8, and
the option's way through the client, the wire and the CLI."""

import json

import numpy as np
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train
from rnnlm.model.batching import make_batch
from rnnlm.model.engines import create_engine
from rnnlm.model.vocab import START_ID
from tests.conftest import needs_torch

VOCAB = 60
CUTOFFS = (8, 25)


def adaptive_engine(cell: str = "gru", cutoffs=CUTOFFS, vocab: int = VOCAB):
    needs_torch(cell)
    config = ModelConfig(
        cell=cell, vocab_size=VOCAB, embed_size=16, hidden_size=16, adaptive_cutoffs=cutoffs
    )
    engine = create_engine(config, vocab, seed=1, device="cpu")
    rng = np.random.default_rng(2)  # weights far from the near-uniform initialisation
    engine.load_state_dict(
        {k: rng.normal(0, 0.7, v.shape).astype(v.dtype) for k, v in engine.state_dict().items()}
    )
    return engine


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_distributions_are_normalised_and_scoring_equals_decoding(cell):
    """``step`` gives the whole (B, V) distribution (every cluster for every row);
    ``token_log_probs`` runs the head and only the clusters of the targets. Words from the
    head and from both tail clusters are scored."""
    engine = adaptive_engine(cell)
    seqs = [np.array([START_ID, 5, 9, 40, 3, 59, 2]), np.array([START_ID, 17, 30, 2])]
    scores = engine.token_log_probs(make_batch(seqs))  # (B, T)
    for row, seq in enumerate(seqs):
        state = None
        for t in range(len(seq) - 1):
            logp, state = engine.step(seq[t : t + 1], state)  # (1, V)
            assert logp.shape == (1, VOCAB)
            assert np.exp(logp.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)
            assert scores[row, t] == pytest.approx(logp[0, seq[t + 1]], abs=1e-5)
    assert np.exp(logp[0]).std() > 1e-3  # sharp enough for the comparison to mean something


def test_the_prefix_tree_path_agrees_with_batches():
    engine = adaptive_engine("lstm")
    # Two sentences sharing a prefix: [START, 5, 9, 40] and [START, 5, 30]
    tokens = np.array([START_ID, 5, 9, 40, 30])
    parents = np.array([-1, 0, 1, 2, 1])
    tree = engine.tree_log_probs(tokens, parents)
    batch = engine.token_log_probs(
        make_batch([np.array([START_ID, 5, 9, 40]), np.array([START_ID, 5, 30])])
    )
    assert tree[1:4] == pytest.approx(batch[0, :3], abs=1e-5)
    assert tree[4] == pytest.approx(batch[1, 1], abs=1e-5)


def test_cutoffs_past_a_smaller_vocabulary_are_dropped():
    """The corpus decides the vocabulary: cut-offs at or past its end leave the layer, and
    the same configuration rebuilds the same layer from a checkpoint."""
    engine = adaptive_engine("gru", cutoffs=(8, 25), vocab=20)
    assert engine.model.adaptive.cutoffs == [8, 20]  # torch appends the vocabulary's end
    tiny = adaptive_engine("gru", cutoffs=(30, 50), vocab=12)
    assert tiny.model.adaptive.cutoffs == [11, 12]  # the rarest word alone in the tail
    logp, _ = tiny.step(np.array([START_ID]), None)
    assert np.exp(logp.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)


def test_an_adaptive_model_trains_and_survives_a_checkpoint():
    needs_torch("gru")
    text = " ".join(["the cat sat on the mat ."] * 40 + ["a dog ran to the park ."] * 20)
    config = ModelConfig(
        cell="gru", vocab_size=100, embed_size=16, hidden_size=16, ngram_order=0,
        min_count=1, adaptive_cutoffs=(4, 8),
    )  # fmt: skip
    events = []
    lm = train(text, config, TrainConfig(epochs=3, seed=0, device="cpu"), on_progress=events.append)
    assert lm.config.tie_weights is False and lm.config.output_classes == 0
    losses = [e.loss for e in events if e.kind == "epoch"]
    assert losses[-1] < losses[0]
    assert any(k.startswith("adaptive.tail.") for k in lm.engine.state_dict())
    loaded = LanguageModel.from_bytes(lm.to_bytes(), device="cpu")
    assert loaded.config.adaptive_cutoffs == (4, 8)
    sentence = ["the", "dog", "sat", "."]
    want = lm.score([sentence], scorer="neural")[0].logprob
    assert loaded.score([sentence], scorer="neural")[0].logprob == pytest.approx(want, abs=1e-6)
    int8 = LanguageModel.from_bytes(lm.to_bytes(), device="cpu").quantize()
    assert int8.score([sentence], scorer="neural")[0].logprob == pytest.approx(want, abs=0.5)
    assert len(int8.generate(seed=1, max_length=5)[0].logprobs) >= 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cell": "rnn"}, "applies to 'gru' and 'lstm'"),
        ({"output_classes": 10}, "two output layers"),
        ({"tie_weights": True}, "clusters have weights of their own"),
        ({"adaptive_cutoffs": (10, 8000)}, "below vocab_size (8000)"),
        ({"adaptive_cutoffs": (10, 10)}, "increasing integers"),
        ({"adaptive_cutoffs": (0, 10)}, "increasing integers"),
        ({"adaptive_cutoffs": "10,20"}, "a list of increasing integers"),
        ({"adaptive_cutoffs": (True, 10)}, "increasing integers"),
    ],
)
def test_adaptive_cutoffs_are_validated(fields, message):
    with pytest.raises(ValueError, match="adaptive_cutoffs|tie_weights") as raised:
        ModelConfig(**{"adaptive_cutoffs": (100, 1000), **fields})
    assert message in str(raised.value)


def test_the_configuration_round_trips_as_json():
    config = ModelConfig(cell="lstm", adaptive_cutoffs=[100, 1000])  # a list, as JSON gives
    assert config.adaptive_cutoffs == (100, 1000)
    assert (config.tie_weights, config.output_classes) == (False, 0)
    again = ModelConfig.from_stored(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert ModelConfig.from_stored({"cell": "gru"}).adaptive_cutoffs == ()


def test_the_option_travels_through_client_wire_and_cli():
    from rnnlm.client._common import parse_option, split_options
    from rnnlm.client.cli import build_parser
    from rnnlm.client.types import _set_fields
    from rnnlm.server.convert import model_config_from_pb

    model, _ = split_options({"cell": "lstm", "adaptive_cutoffs": [100, 1000]})
    assert list(model.adaptive_cutoffs) == [100, 1000]
    assert model_config_from_pb(model).adaptive_cutoffs == (100, 1000)
    assert model_config_from_pb(split_options({"cell": "gru"})[0]).adaptive_cutoffs == ()
    assert _set_fields(model)["adaptive_cutoffs"] == (100, 1000)
    assert parse_option("adaptive_cutoffs=100,1000") == ("adaptive_cutoffs", [100, 1000])
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_option("adaptive_cutoffs=100;1000")
    args = build_parser().parse_args(["train", "m", "c.txt", "--adaptive-cutoffs", "50,500"])
    assert args.adaptive_cutoffs == [50, 500]
