"""``rnnlm serve --quantize int8``: gru/lstm models score (and generate) with int8 copies,
close to the float server's scores; a NumPy rnn model, and a float64 one, stay float."""

from __future__ import annotations

import pytest

from rnnlm.client import LMClient
from tests.e2e.conftest import train_small

pytestmark = [
    pytest.mark.parametrize("backend", ["local"], indirect=True),
    pytest.mark.parametrize("client_kind", ["sync"], indirect=True),
]
SENTENCES = ["the value of the function is returned .", "a class may define methods ."]


def logprobs(client: LMClient, model_id: str) -> list[float]:
    result = client.score(model_id, SENTENCES, scorer="neural")
    return [t.logprob for s in result.scores for t in s.tokens]


def test_an_int8_server_scores_close_to_a_float_one(start_server, client, corpus_bytes):
    models = {"q-gru": {"cell": "gru"}, "q-rnn": {"cell": "rnn"}, "q-f64": {"dtype": "float64"}}
    for model_id, options in models.items():
        job = train_small(client, corpus_bytes, model_id, **options)
        assert job.state == "completed", job.error
    int8 = start_server(quantize="int8")
    with LMClient(int8.address) as quantized:
        served = {model_id: logprobs(quantized, model_id) for model_id in models}
        assert quantized.generate("q-gru", num_sentences=2, seed=1)
    floats = {model_id: logprobs(client, model_id) for model_id in models}
    assert served["q-gru"] != floats["q-gru"]  # int8 weights really score
    assert served["q-gru"] == pytest.approx(floats["q-gru"], abs=0.1)
    assert served["q-rnn"] == pytest.approx(floats["q-rnn"], abs=1e-6)  # the NumPy rnn stays float
    # torch's int8 layers take float32 only: a float64 model is served as it is, not failed.
    assert served["q-f64"] == pytest.approx(floats["q-f64"], abs=1e-9)
