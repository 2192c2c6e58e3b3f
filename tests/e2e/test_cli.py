"""The ``rnnlm`` command against a real server: train (upload, progress, exit code), score,
rank, generate, models, delete; errors as one line with the status code."""

from __future__ import annotations

import json


def test_cli_train_score_rank_generate(cli, tmp_path, corpus_bytes):
    corpus = tmp_path / "docs.txt"
    corpus.write_bytes(corpus_bytes)
    code, out, err = cli(
        "train", "cli", str(corpus), "--epochs", "1", "--vocab-size", "400",
        "--hidden-size", "24", "--embed-size", "24", "--option", "log_every=5",
    )  # fmt: skip
    assert code == 0, err
    assert "epoch 1/1" in err and "ppl" in err and "completed" in (out + err)

    code, out, _ = cli("score", "cli", "--json", "the value of the list .", "list the . of value")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and all("log10prob" in r for r in rows)

    code, out, _ = cli("rank", "cli", "--json", "list the . of value", "the value of the list .")
    ranked = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["index"] for r in ranked} == {0, 1}
    assert ranked[0]["log10prob"] >= ranked[1]["log10prob"]

    code, out, _ = cli("score", "cli", "the value of the list .")
    assert code == 0 and "the value of the list" in out

    code, out, _ = cli("generate", "cli", "-n", "2", "--seed", "4", "--max-tokens", "6")
    assert code == 0 and len([line for line in out.splitlines() if line.strip()]) == 2

    code, out, _ = cli("models")
    assert code == 0 and "cli" in out and "ready" in out

    code, out, _ = cli("delete", "cli")
    assert code == 0


def test_cli_errors_are_one_line_with_the_code(cli):
    code, _out, err = cli("score", "ghost", "a sentence")
    assert code == 1
    assert "model 'ghost' does not exist" in err and "NOT_FOUND" in err
    assert "Traceback" not in err
