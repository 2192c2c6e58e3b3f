"""``rnnlm serve --quantize int8``: gru/lstm models score (and generate) with int8 copies,
close to the float server's scores; a NumPy rnn model stays float."""

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
    for model_id, cell in (("q-gru", "gru"), ("q-rnn", "rnn")):
        job = train_small(client, corpus_bytes, model_id, cell=cell)
        assert job.state == "completed", job.error
    int8 = start_server(quantize="int8")
    with LMClient(int8.address) as quantized:
        gru_int8, rnn_int8 = logprobs(quantized, "q-gru"), logprobs(quantized, "q-rnn")
        assert quantized.generate("q-gru", num_sentences=2, seed=1)
    gru_float, rnn_float = logprobs(client, "q-gru"), logprobs(client, "q-rnn")
    assert gru_int8 != gru_float  # int8 weights really score
    assert gru_int8 == pytest.approx(gru_float, abs=0.1)
    assert rnn_int8 == pytest.approx(rnn_float, abs=1e-6)  # the NumPy rnn stays float
