"""N-best rescoring and the n-gram options against a real server (local store): the CLI on a
10,000-line Moses list, the library against ScoreSentence, asyncio against sync, scorer and
neural weight flowing through, ARPA export, attach and train.

One small model (with its built-in 4-gram part) is trained once for the module."""

from __future__ import annotations

import asyncio
import io
import random
import re
import sys
import time
from pathlib import Path

import pytest

from rnnlm.client import AsyncLMClient, LMClient, read_nbest
from rnnlm.client.cli import main
from rnnlm.server import RnnlmServer

from .conftest import Backend, train_small

MODEL = "mt"
ADDED = re.compile(rb" RNNLM0= -?[0-9.]+")


@pytest.fixture(scope="module")
def served(tmp_path_factory, pydoc_text):
    """(server, client) with model ``mt`` trained; the words split at whitespace, as an MT
    pipeline's tokenised text is."""
    store = tmp_path_factory.mktemp("rescore") / "store"
    server = RnnlmServer(Backend("local", store, None, "rnnlm").config())
    server.start()
    client = LMClient(server.address, timeout=60.0, retries=0)
    job = train_small(client, pydoc_text[:40_000].encode(), MODEL, words="whitespace")
    assert job.state == "completed", job.error
    yield server, client
    client.close()
    server.stop(grace=1.0)


@pytest.fixture
def each_client(served, client_kind):
    """(server, client) with the blocking client, then the asyncio one."""
    server, _ = served
    with client_kind(server.address, timeout=60.0, retries=0) as client:
        yield server, client


def _nbest(pydoc_text: str, groups: int, size: int, seed: int = 0) -> str:
    """A Moses n-best list: ``groups`` sentences of the help text, ``size`` variants each
    (words swapped or dropped), plus one empty hypothesis per list."""
    rng = random.Random(seed)
    words = pydoc_text.split()
    lines = []
    for g in range(groups):
        start = rng.randrange(len(words) - 20)
        base = words[start : start + rng.randint(8, 16)]
        for h in range(size):
            hyp = list(base)
            if h == size - 1:
                hyp = []
            elif h:
                i, j = rng.randrange(len(hyp)), rng.randrange(len(hyp))
                hyp[i], hyp[j] = hyp[j], hyp[i]
            total = -0.5 * len(hyp) - rng.random()
            lines.append(f"{g} ||| {' '.join(hyp)} ||| LM0= {total:.3f} TM0= -1 -2 ||| {total:.4f}")
    return "\n".join(lines) + "\n"


def test_cli_rescores_10000_lines_in_order_adding_the_feature(served, pydoc_text, tmp_path, capsys):
    server, _ = served
    source = tmp_path / "nbest.txt"
    source.write_text(_nbest(pydoc_text, 1000, 10), encoding="utf-8")
    out = tmp_path / "rescored.txt"
    started = time.perf_counter()
    code = main(["--target", server.address, "rescore", MODEL, str(source), "-o", str(out)])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 0, err
    written = out.read_bytes().splitlines(keepends=True)
    original = source.read_bytes().splitlines(keepends=True)
    assert len(written) == len(original) == 10_000
    assert all(len(ADDED.findall(line)) == 1 for line in written)
    assert [ADDED.sub(b"", line) for line in written] == original  # order and bytes kept
    print(f"rnnlm rescore: 10,000 lines in {elapsed:.1f}s ({10_000 / elapsed:,.0f}/s); {err}")


def test_cli_rescore_reranks_with_a_weight_from_stdin(served, pydoc_text, monkeypatch, capsys):
    server, _ = served
    text = _nbest(pydoc_text, 3, 4, seed=1)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code = main(["--target", server.address, "rescore", MODEL, "--weight", "1", "--update-total"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    entries = list(read_nbest(captured.out))
    assert [e.id for e in entries] == [str(g) for g in range(3) for _ in range(4)]
    for g in range(3):
        totals = [e.total for e in entries if e.id == str(g)]
        assert totals == sorted(totals, reverse=True)  # best first, the new total written


def test_library_rescore_equals_score_sentence(each_client, pydoc_text):
    _, client = each_client
    text = _nbest(pydoc_text, 4, 6, seed=2)
    rescored = client.rescore(text, MODEL, batch_size=7)  # groups split across requests
    score = lambda hypothesis: client.score(MODEL, [hypothesis], allow_empty=True).scores[0]  # noqa: E731
    alone = [score(r.entry.hypothesis) for r in rescored]
    assert [r.value for r in rescored] == pytest.approx([s.logprob for s in alone], rel=1e-5)
    assert "" in [r.entry.hypothesis for r in rescored]  # the empty hypotheses were scored
    in_log10 = client.rescore(text, MODEL, log10=True, feature="LM1")
    assert [r.value for r in in_log10] == pytest.approx([s.log10prob for s in alone], rel=1e-5)


def test_async_rescore_equals_sync(served, pydoc_text):
    server, client = served
    text = _nbest(pydoc_text, 20, 5, seed=3)
    sync = client.rescore(text, MODEL, weight=0.5, scorer="neural")

    async def scenario():
        async with AsyncLMClient(server.address, timeout=60.0) as aclient:
            return await aclient.rescore(
                text, MODEL, weight=0.5, scorer="neural", batch_size=16, max_in_flight=3
            )

    got = asyncio.run(scenario())
    assert [r.entry.line_no for r in got] == [r.entry.line_no for r in sync]
    assert [r.value for r in got] == pytest.approx([r.value for r in sync], rel=1e-5)


def test_scorer_neural_weight_bos_eos_and_length_norm_flow_through(each_client):
    _, client = each_client
    sentences = ["the value of the list is returned", "list the of value"]
    neural = client.score(MODEL, sentences, scorer="neural")
    ngram = client.score(MODEL, sentences, scorer="ngram")
    mixed = client.score(MODEL, sentences, scorer="interpolated", neural_weight=0.3)
    assert (neural.scorer, ngram.scorer, mixed.scorer) == ("neural", "ngram", "interpolated")
    assert mixed.neural_weight == pytest.approx(0.3) and neural.neural_weight is None
    assert all(t.ngram_order == 0 for t in neural.scores[0].tokens)
    assert any(t.ngram_order > 0 for t in ngram.scores[0].tokens)
    assert neural.scores[0].logprob != pytest.approx(ngram.scores[0].logprob)
    no_eos = client.score(MODEL, sentences, scorer="neural", eos=False)
    assert len(no_eos.scores[0].tokens) == len(neural.scores[0].tokens) - 1
    no_bos = client.score(MODEL, sentences, scorer="neural", bos=False)
    assert len(no_bos.scores[0].tokens) == len(neural.scores[0].tokens) - 1
    ranked = client.rank(MODEL, sentences, length_norm="average")
    for s in ranked:
        assert s.rank_score == pytest.approx(s.logprob / len(s.tokens))


def test_cli_score_shows_the_scorer(served, capsys):
    server, _ = served
    args = ["--target", server.address, "rank", MODEL, "a list of values", "values list of a"]
    assert main([*args, "--scorer", "ngram", "--length-norm", "gnmt", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"scorer": "ngram"' in out and '"rank_score"' in out
    assert main([*args, "--scorer", "interpolated", "--neural-weight", "0.4"]) == 0
    captured = capsys.readouterr()
    assert "scored by: interpolated (neural weight 0.4)" in captured.err


def test_export_attach_and_train_with_an_arpa(each_client, pydoc_text, tmp_path: Path, capsys):
    server, client = each_client
    arpa = tmp_path / "mt.arpa"
    size = client.export_arpa(MODEL, arpa)
    assert size == arpa.stat().st_size > 0 and arpa.read_text().lstrip().startswith("\\data\\")
    cli = ["--target", server.address]
    assert main([*cli, "export-arpa", MODEL, "-o", str(tmp_path / "cli.arpa")]) == 0
    assert (tmp_path / "cli.arpa").read_bytes() == arpa.read_bytes()

    before = client.model(MODEL).current_version
    info = client.attach_ngram(MODEL, arpa, neural_weight=0.5)
    assert info.current_version == before + 1
    assert info.current.ngram_source == "arpa:mt.arpa" and info.current.neural_weight == 0.5
    assert main([*cli, "attach-arpa", MODEL, str(arpa)]) == 0
    assert "4-gram from arpa:mt.arpa" in capsys.readouterr().out

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(pydoc_text[:20_000], encoding="utf-8")
    small = ["--epochs", "1", "--vocab-size", "400", "--hidden-size", "24", "--embed-size", "24"]
    code = main([*cli, "train", "with-arpa", str(corpus), "--arpa", str(arpa), *small])
    assert code == 0, capsys.readouterr().err
    assert client.model("with-arpa").current.ngram_source == "arpa:mt.arpa"
