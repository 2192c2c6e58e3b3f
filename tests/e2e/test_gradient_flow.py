"""The vanishing-gradient report through a real server: MeasureGradientFlow with both
clients, the ``rnnlm gradients`` command (table, --json, --plot), and its errors as one line
with exit status 1."""

from __future__ import annotations

import json

import grpc
import pytest

from rnnlm.client import LMClient
from rnnlm.client.errors import InvalidArgument, NotFound, ResourceExhausted
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc
from tests.e2e.conftest import train_small

TINY = {"vocab_size": 200, "embed_size": 16, "hidden_size": 16, "epochs": 1, "ngram_order": 0}
HELD_OUT = [
    "the value of the list is not a number .",
    "a class may define a method that is called when the object is used .",
    "this is the name of the module .",
]


def train_tiny(client, corpus_bytes: bytes, model_id: str, cell: str) -> None:
    job = train_small(client, corpus_bytes[:15_000], model_id, cell=cell, **TINY)
    assert job.state == "completed", job.error


def positions(client, model_id: str) -> int:
    """The positions the held-out sentences have for this model: words plus the end."""
    scores = client.score(model_id, HELD_OUT).scores
    return sum(len(s.tokens) for s in scores)


def test_the_report_through_the_service(client, corpus_bytes):
    for cell in ("rnn", "gru"):
        train_tiny(client, corpus_bytes, f"flow-{cell}", cell)
        report = client.gradient_flow(f"flow-{cell}", HELD_OUT, max_distance=6)
        assert (report.model_id, report.model_version, report.cell) == (f"flow-{cell}", 1, cell)
        assert report.distances == tuple(range(7))
        assert report.counts[0] == positions(client, f"flow-{cell}")
        assert list(report.counts) == sorted(report.counts, reverse=True)
        assert all(norm > 0 for norm in report.mean_norms)
        assert report.decay_per_step is not None and 0 < report.decay_per_step < 2
        assert report.curve == list(zip(range(7), report.mean_norms))
    with pytest.raises(InvalidArgument, match=r"sentences\[1\] has no words"):
        client.gradient_flow("flow-rnn", ["the list .", "   "])


def test_the_limits_of_scoring_apply(start_server):
    server = start_server(max_sentences_per_request=2)
    with LMClient(server.address, retries=0) as client:
        with pytest.raises(ResourceExhausted, match="the limit is 2"):
            client.gradient_flow("any", ["a .", "b .", "c ."])
        with pytest.raises(InvalidArgument, match="sentences is empty"):
            client.gradient_flow("any", [])
        with pytest.raises(NotFound, match="'ghost'"):
            client.gradient_flow("ghost", ["a ."])
    with grpc.insecure_channel(server.address) as channel:  # max_distance unset: 20
        stub = rnnlm_pb2_grpc.LanguageModelServiceStub(channel)
        request = pb.GradientFlowRequest(model_id="ghost", sentences=[pb.Sentence(text="a .")])
        with pytest.raises(grpc.RpcError) as err:
            stub.MeasureGradientFlow(request)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # got past the distance check


def test_the_gradients_command(cli, server, corpus_bytes, tmp_path):
    with LMClient(server.address, retries=0) as client:
        train_tiny(client, corpus_bytes, "cli-rnn", "rnn")
        train_tiny(client, corpus_bytes, "cli-lstm", "lstm")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(HELD_OUT) + "\n\n")

    code, out, err = cli("gradients", "cli-rnn", "cli-lstm", "--file", str(held_out), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["model_id"], r["cell"]) for r in rows] == [("cli-rnn", "rnn"), ("cli-lstm", "lstm")]
    # Asked for 20 (the default): the longest sentence, 15 words and its end, reaches 15.
    assert all(r["distances"] == list(range(16)) and len(r["mean_norms"]) == 16 for r in rows)

    plot = tmp_path / "flow.png"
    sentences = [arg for s in HELD_OUT for arg in ("-s", s)]
    code, out, err = cli(
        "gradients", "cli-rnn", "cli-lstm", *sentences, "--max-distance", "4", "--plot", str(plot)
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["k", "cli-rnn", "(rnn)", "cli-lstm", "(lstm)"]
    assert [line.split()[0] for line in lines[1:6]] == ["0", "1", "2", "3", "4"]
    assert lines[-1].startswith("per step")
    assert plot.read_bytes().startswith(b"\x89PNG") and str(plot) in err


def test_gradients_errors_are_one_line_with_exit_1(cli, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    for args, words in (
        (["ghost", "-s", "a sentence ."], "model 'ghost' does not exist"),
        (["ghost", "--file", str(empty)], "sentences is empty"),
        (
            ["ghost", "-s", "a .", "--max-distance", "0"],
            "max_distance must be an integer in [1, 200]",
        ),
        (["ghost", "-s", "a .", "--max-distance", "201"], "got 201"),
    ):
        code, _out, err = cli("gradients", *args)
        assert code == 1, args
        assert words in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
