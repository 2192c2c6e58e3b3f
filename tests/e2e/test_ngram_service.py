"""The n-gram part through a real server: interpolated scores equal in-process ones, the
scorer and neural_weight options, length normalisation, ARPA export, attach and train with
an ARPA model, and the refusals (bad ARPA, no shared words, weight outside [0, 1])."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from rnnlm.client import FailedPrecondition, InvalidArgument
from rnnlm.model.ngram import NgramModel
from rnnlm.server.models import ModelRegistry
from rnnlm.server.store import open_store

from .conftest import train_small

# One backend is enough here: the store suite and test_service cover both.
pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)

SENTENCES = [
    "the function returns a new list of the items .",
    ". items list the function of new returns a the",
    "a zzyzx value",
]


@pytest.fixture
def trained(client, corpus_bytes):
    job = train_small(client, corpus_bytes, "ng")
    assert job.state == "completed"
    return client.model("ng")


def _load_in_process(backend, model_id: str):
    store = open_store(backend.redis_url, str(backend.store_dir), backend.prefix)
    try:
        return ModelRegistry(store).load(model_id)
    finally:
        store.close()


def test_version_has_a_tuned_ngram_part(trained):
    version = trained.versions[0]
    assert version.ngram_order == 4 and version.ngram_source == "built-in"
    assert 0.0 < version.neural_weight < 1.0
    # Tuned on the validation split: the mixture beats both parts there.
    assert version.interpolated_valid_perplexity < version.valid_perplexity
    assert version.interpolated_valid_perplexity < version.ngram_valid_perplexity


def test_interpolated_scores_through_grpc_equal_in_process(client, trained, backend):
    lm = _load_in_process(backend, "ng")
    remote = client.score("ng", SENTENCES)
    assert remote.scorer == "interpolated" and remote.neural_weight == lm.ngram.neural_weight
    for got, want in zip(remote.scores, lm.score(SENTENCES)):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-5)
        assert [t.ngram_order for t in got.tokens] == [t.ngram_order for t in want.tokens]
        assert all(1 <= t.ngram_order <= 4 for t in got.tokens)


def test_scorers_and_weight_compose(client, trained):
    neural = client.score("ng", SENTENCES, scorer="neural").scores
    ngram = client.score("ng", SENTENCES, scorer="ngram").scores
    mixed = client.score("ng", SENTENCES, neural_weight=0.3).scores
    for n, g, m in zip(neural, ngram, mixed):
        assert all(t.ngram_order == 0 for t in n.tokens)
        for tn, tg, tm in zip(n.tokens, g.tokens, m.tokens):
            want = math.log(0.3 * math.exp(tn.logprob) + 0.7 * math.exp(tg.logprob))
            assert tm.logprob == pytest.approx(want, abs=1e-6)
    ends = client.score("ng", SENTENCES, neural_weight=1.0).scores
    assert [s.logprob for s in ends] == pytest.approx([s.logprob for s in neural], abs=1e-9)


def test_bos_eos_and_length_normalisation(client, trained):
    full = client.score("ng", SENTENCES[:1]).scores[0]
    fragment = client.score("ng", SENTENCES[:1], bos=False, eos=False).scores[0]
    assert len(fragment.tokens) == len(full.tokens) - 2  # first word is context, no END
    assert fragment.tokens[-1].token != "SENTENCE_END"
    ranked = client.rank("ng", SENTENCES, length_norm="average")
    for s in ranked:
        assert s.rank_score == pytest.approx(s.logprob / len(s.tokens))
    assert [s.rank_score for s in ranked] == sorted((s.rank_score for s in ranked), reverse=True)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_weight_outside_unit_interval_is_invalid(client, trained, weight):
    with pytest.raises(InvalidArgument, match="neural_weight"):
        client.score("ng", SENTENCES, neural_weight=weight)


def test_model_without_ngram_part(client, corpus_bytes):
    train_small(client, corpus_bytes, "plain", ngram_order=0)
    assert client.score("plain", SENTENCES).scorer == "neural"
    with pytest.raises(FailedPrecondition, match="needs an n-gram part"):
        client.score("plain", SENTENCES, scorer="ngram")
    with pytest.raises(FailedPrecondition, match="no n-gram part"):
        client.export_arpa("plain", io.BytesIO())


def test_export_arpa_reads_back_with_the_same_scores(client, trained, tmp_path):
    path = tmp_path / "ng.arpa"
    assert client.export_arpa("ng", path) == path.stat().st_size > 0
    words = client.score("ng", SENTENCES[:1]).scores[0].words
    remote = client.score("ng", [list(words)], scorer="ngram").scores[0]
    model = NgramModel.from_arpa(path.read_text(encoding="utf-8").splitlines())
    ids = np.concatenate([[1], model.ids(words), [2]])
    logp, _ = model.token_log_probs([ids])
    assert logp[0].sum() == pytest.approx(remote.logprob, abs=1e-4)  # ARPA keeps 7 digits
    kenlm = pytest.importorskip("kenlm")
    log10 = kenlm.Model(str(path)).score(" ".join(words), bos=True, eos=True)
    assert log10 == pytest.approx(remote.log10prob, abs=1e-4)


def test_attach_arpa_publishes_a_new_version(client, trained, tmp_path):
    path = tmp_path / "own.arpa"
    client.export_arpa("ng", path)
    info = client.attach_ngram("ng", path)
    assert info.current_version == 2
    version = info.versions[0]
    assert version.ngram_source == "arpa:own.arpa" and 0 < version.neural_weight < 1
    fixed = client.attach_ngram("ng", path, neural_weight=0.25)
    assert fixed.versions[0].neural_weight == 0.25
    assert client.score("ng", SENTENCES).neural_weight == 0.25


def test_train_with_an_arpa_model(client, trained, corpus_bytes, tmp_path):
    path = tmp_path / "given.arpa"
    client.export_arpa("ng", path)
    job = train_small(client, corpus_bytes, "given", arpa=path)
    assert job.state == "completed"
    assert client.model("given").versions[0].ngram_source == "arpa:given.arpa"


def test_bad_arpa_files_are_refused_with_the_reason(client, trained):
    broken = b"\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\nnot-a-number\t</s>\n\\end\\\n"
    with pytest.raises(InvalidArgument, match=r"does not parse: line \d+"):
        client.attach_ngram("ng", broken)
    foreign = (
        b"\\data\\\nngram 1=5\n\n\\1-grams:\n-99\t<s>\n-1.0\t</s>\n-1.0\t<unk>\n"
        b"-0.5\tzzqx\n-0.5\tqqzx\n\n\\end\\\n"
    )
    with pytest.raises(InvalidArgument, match="shares no word"):
        client.attach_ngram("ng", foreign)
    with pytest.raises(InvalidArgument, match="neural_weight"):
        client.attach_ngram("ng", foreign, neural_weight=2.0)
    assert client.model("ng").current_version == 1  # nothing was published


def test_class_factored_model_through_grpc_equals_in_process(client, corpus_bytes, backend):
    """``output_classes`` travels through the API, the class ranges are stored with the
    weights, and scores (and generation) through gRPC equal the loaded model's."""
    job = train_small(client, corpus_bytes, "cls", output_classes=6)
    assert job.state == "completed"
    assert client.model("cls").config["output_classes"] == 6
    lm = _load_in_process(backend, "cls")
    assert len(lm.engine.model.classes.bounds) == 7
    remote = client.score("cls", SENTENCES)
    for got, want in zip(remote.scores, lm.score(SENTENCES)):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-5)
    (sample,) = client.generate("cls", max_tokens=5, seed=1)
    assert sample.text
