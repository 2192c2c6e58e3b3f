"""The ``rnnlm`` command as a new user meets it, through a real server (one local-store
server and one small trained model for the module): long inputs split without being asked,
every error one line with exit status 1 and no raw Python text, options checked before any
upload, a device the server lacks refused at once, ``-n`` meaning the number of sentences for
every decoding method, empty sentences refused, corpora listed and deleted, human views with
``--json`` for scripts, and a deleted model's job never reported ready nor brought back."""

from __future__ import annotations

import json
import re

import pytest

from rnnlm.client import LMClient
from rnnlm.client.cli import main
from rnnlm.server import RnnlmServer
from tests.e2e.conftest import FAST_TRAINING, SMALL_MODEL, Backend

RAW_PYTHON = re.compile(r"Traceback|invalid literal|\[Errno|Error:|codec can't")


@pytest.fixture(scope="module")
def server(tmp_path_factory, pydoc_text) -> RnnlmServer:
    store = tmp_path_factory.mktemp("cli-store")
    server = RnnlmServer(Backend("local", store, None, "rnnlm").config(max_sentences_per_request=8))
    server.start()
    with LMClient(server.address, timeout=60) as client:
        corpus = client.upload_corpus(pydoc_text[:40_000].encode(), filename="pydoc.txt")
        job = client.train("m", corpus, **SMALL_MODEL, **FAST_TRAINING)
        for _ in client.watch(job.job_id):
            pass
        assert client.job(job.job_id).state == "completed"
    yield server
    server.stop(grace=1.0)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and not RAW_PYTHON.search(lines[0]), lines[0]
    return lines[0]


# -- long inputs ----------------------------------------------------------------------


def test_score_and_rank_split_a_file_longer_than_the_servers_limit(cli, tmp_path):
    """The server takes 8 sentences a request here; 21 come back whole and in order."""
    sentences = [f"the value {i} of the list ." for i in range(20)] + ["list the . of value"]
    path = tmp_path / "many.txt"
    path.write_text("\n".join(sentences) + "\n")
    code, out, err = cli("score", "m", "--file", str(path), "--json", "--batch-size", "8")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == list(range(21))
    assert [r["sentence"] for r in rows] == sentences

    code, out, err = cli("rank", "m", "--file", str(path), "--json", "--batch-size", "8")
    assert code == 0, err
    ranked = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["index"] for r in ranked) == list(range(21))
    scores = [r["rank_score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)  # one ranking across every request
    assert ranked[-1]["sentence"] == "list the . of value"


def test_the_library_splits_too_and_names_a_bad_sentence_by_its_place(server):
    with LMClient(server.address, timeout=30) as client:
        sentences = [f"the list {i} ." for i in range(19)]
        result = client.score("m", sentences, batch_size=8)
        assert [s.index for s in result.scores] == list(range(19))
        alone = client.score("m", sentences[17:18])
        assert result.scores[17].logprob == pytest.approx(alone.scores[0].logprob, abs=1e-6)
        with pytest.raises(Exception, match=r"sentences\[13\] has no words"):
            client.score("m", [*sentences[:13], "   ", "the end ."], batch_size=8)


# -- errors ---------------------------------------------------------------------------


def test_errors_are_one_line_exit_1_with_the_command_to_type(cli, tmp_path):
    code, _, err = cli("train", "m2", "corpus.txt", "--option", "patience=abc")
    assert code == 1 and "option patience must be a whole number, got 'abc'" in one_error_line(err)

    code, _, err = cli("train", "m2", str(tmp_path / "missing.txt"), "--epochs", "1")
    line = one_error_line(err)
    assert code == 1 and "cannot open" in line and "no such file or directory" in line

    code, _, err = cli("frobnicate")
    assert code == 1 and "rnnlm --help" in one_error_line(err)

    code, _, err = cli("score", "ghost", "a sentence")
    line = one_error_line(err)
    assert code == 1 and "NOT_FOUND" in line and "rnnlm models" in line
    assert "ListModels" not in line

    code, _, err = cli("job", "j-0123456789abcdef")
    assert code == 1 and "rnnlm jobs" in one_error_line(err)

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    code, _, err = cli("score", "m", "--file", str(bad))
    assert code == 1 and "not UTF-8" in one_error_line(err)


def test_an_unreachable_server_says_how_to_start_one(capsys):
    assert main(["--target", "127.0.0.1:1", "--timeout", "3", "models"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "UNAVAILABLE" in line and "rnnlm serve" in line


# -- training options checked first ----------------------------------------------------


def test_bad_options_and_a_missing_device_are_refused_before_any_upload(cli, tmp_path):
    corpus = tmp_path / "fresh.txt"
    corpus.write_text("a sentence nobody uploaded before .\n" * 50)
    _, before, _ = cli("corpora", "--json")

    code, _, err = cli("train", "m3", str(corpus), "--dropout", "1.5")
    assert code == 1 and "dropout" in one_error_line(err) and "INVALID_ARGUMENT" in err

    code, _, err = cli("train", "m3", str(corpus), "--device", "cuda:7")
    line = one_error_line(err)
    assert code == 1 and "cuda:7" in line and "FAILED_PRECONDITION" in line

    code, _, err = cli("train", "m3", str(corpus), "--cell", "rnn", "--device", "cuda")
    assert code == 1 and "CPU only" in one_error_line(err)

    _, after, _ = cli("corpora", "--json")
    assert after == before  # nothing was uploaded
    code, out, _ = cli("models")
    assert "m3" not in out  # and no empty model left behind


def test_corpora_are_listed_and_deleted(cli, tmp_path):
    corpus = tmp_path / "listed.txt"
    corpus.write_text("words to keep for a while .\n" * 20)
    code, out, err = cli("train", "m4", str(corpus), "--epochs", "1", "--detach", "--cell", "rnn")
    assert code == 0, err
    corpus_id = re.search(r"(c-[0-9a-f]+)", err)[1]
    job_id = out.strip()
    assert cli("watch", job_id)[0] == 0
    code, out, _ = cli("corpora")
    assert corpus_id in out and "listed.txt" in out and "bytes" in out.splitlines()[0]
    rows = [json.loads(line) for line in cli("corpora", "--json")[1].splitlines()]
    assert corpus_id in {r["corpus_id"] for r in rows}
    code, out, _ = cli("delete-corpus", corpus_id)
    assert code == 0 and f"deleted corpus {corpus_id}" in out
    assert corpus_id not in cli("corpora")[1]
    assert cli("delete", "m4")[1].strip() == "deleted model m4 (1 version)"


# -- generation -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sample", "beam"])
def test_n_is_the_number_of_sentences_for_every_method(cli, method):
    code, out, err = cli("generate", "m", "--method", method, "-n", "3", "--max-tokens", "6",
                         "--seed", "1", "--json")  # fmt: skip
    assert code == 0, err
    sentences = [json.loads(line) for line in out.splitlines()]
    assert len(sentences) == 3
    if method == "beam":  # the 3 most probable, distinct, best first
        assert len({tuple(s["tokens"]) for s in sentences}) == 3
        logprobs = [s["logprob"] for s in sentences]
        assert logprobs == sorted(logprobs, reverse=True)


def test_generate_refuses_n_0_and_greedy_n_2(cli):
    code, _, err = cli("generate", "m", "-n", "0")
    assert code == 1 and "must be a whole number >= 1" in one_error_line(err)
    code, _, err = cli("generate", "m", "--method", "greedy", "-n", "2")
    line = one_error_line(err)
    assert code == 1 and "greedy decoding gives one sentence" in line
    code, out, err = cli("generate", "m", "--method", "greedy", "--max-tokens", "5")
    assert code == 0 and len(out.strip().splitlines()) == 1, err


def test_an_empty_sentence_is_refused_but_rescoring_scores_an_empty_hypothesis(cli, tmp_path):
    code, _, err = cli("score", "m", "")
    assert code == 1 and "sentences[0] has no words" in one_error_line(err)
    nbest = tmp_path / "nbest.txt"
    nbest.write_text("0 ||| the list . ||| LM0= -1 ||| -1\n0 |||  ||| LM0= -2 ||| -2\n")
    code, out, err = cli("rescore", "m", str(nbest))
    assert code == 0, err
    assert all("RNNLM0=" in line for line in out.splitlines())


# -- views ----------------------------------------------------------------------------


def test_job_and_model_are_tables_for_people_and_json_for_scripts(cli, server):
    with LMClient(server.address) as client:
        job_id = client.model("m").versions[0].job_id
    code, out, _ = cli("job", job_id)
    assert code == 0 and not out.lstrip().startswith("{")
    assert re.search(r"^state\s+completed, published version 1$", out, re.M), out
    assert re.search(r"^progress\s+epoch 2/2", out, re.M)
    assert json.loads(cli("job", job_id, "--json")[1])["job_id"] == job_id

    code, out, _ = cli("model", "m")
    assert code == 0 and re.search(r"^current version\s+1$", out, re.M)
    assert re.search(r"^version\s+created\s+status", out, re.M)  # the versions table
    assert json.loads(cli("model", "m", "--json")[1])["model_id"] == "m"


def test_cancel_says_what_happens(cli, tmp_path):
    corpus = tmp_path / "long.txt"
    corpus.write_text("the cat sat on the mat .\n" * 400)
    code, out, err = cli("train", "m5", str(corpus), "--epochs", "500", "--detach",
                         "--cell", "rnn", "--hidden-size", "8")  # fmt: skip
    assert code == 0, err
    job_id = out.strip()
    code, out, _ = cli("cancel", job_id)
    assert code == 0
    assert out.strip() in (
        f"cancelling job {job_id}: it stops after its current step (resumable)",
        f"job {job_id} is cancelled",
    )
    code, _, err = cli("watch", job_id)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"error: job {job_id} was cancelled; rnnlm resume {job_id} continues it"
    )


def test_a_deleted_models_job_is_not_ready_and_does_not_resume(cli, server, tmp_path):
    corpus = tmp_path / "gone.txt"
    corpus.write_text("the cat sat on the mat .\n" * 400)
    tiny = ("--cell", "rnn", "--hidden-size", "8", "--detach")
    done = cli("train", "gone", str(corpus), "--epochs", "1", *tiny)[1].strip()
    assert cli("watch", done)[0] == 0
    stopped = cli("train", "gone", str(corpus), "--epochs", "500", *tiny)[1].strip()
    assert cli("cancel", stopped)[0] == 0
    cli("watch", stopped)  # until it ended (cancelled)
    # What a replica whose model delete raced the jobs' records leaves behind: the model
    # is gone, its jobs are still there.
    server.models.delete("gone")
    code, _, err = cli("watch", done)
    assert code == 1 and "but model gone was deleted since" in err and "is ready" not in err
    code, _, err = cli("resume", stopped)
    line = one_error_line(err)
    assert code == 1 and "which was deleted since" in line and "FAILED_PRECONDITION" in line
    assert "gone" not in cli("models")[1]  # not recreated


def test_validate_only_checks_without_starting_anything(server):
    with LMClient(server.address, timeout=30) as client:
        checked = client.train("checked", validate_only=True, cell="gru", epochs=3)
        assert checked.job_id == "" and checked.model_id == "checked"
        assert checked.training["epochs"] == 3 and checked.training["checkpoint_every"] >= 1
        assert checked.model_config["cell"] == "gru"
        with pytest.raises(Exception, match="corpus 'c-0123456789abcdef0123456789abcdef'"):
            client.train("checked", "c-0123456789abcdef0123456789abcdef", validate_only=True)
        assert "checked" not in {m.model_id for m in client.models()}


def test_every_command_that_prints_takes_json():
    from rnnlm.client.cli import WRITES_FILES, build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    for name, sub in commands.choices.items():
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert ("--json" in flags) == (name not in WRITES_FILES), name


def test_json_for_scripts_from_the_commands_that_change_things(cli, tmp_path):
    assert json.loads(cli("health", "--json")[1]) == {"status": "SERVING"}
    corpus = tmp_path / "scripted.txt"
    corpus.write_text("the cat sat on the mat .\n" * 100)
    code, out, err = cli("train", "scripted", str(corpus), "--epochs", "1", "--cell", "rnn",
                         "--hidden-size", "8", "--json")  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["state"] in ("queued", "running") and lines[-1]["state"] == "completed"
    assert {line.get("kind") for line in lines[1:-1]} >= {"progress", "state"}
    job_id = lines[0]["job_id"]
    deleted = json.loads(cli("delete", "scripted", "--json")[1])
    assert deleted == {"model_id": "scripted", "versions_deleted": 1}
    assert cli("job", job_id)[0] == 1  # the model's jobs went with it


def test_what_a_hostile_review_found_is_one_line_with_the_users_words(cli, server, tmp_path):
    code, _, err = cli("score", "m", "caf\udce9 au lait")  # a Latin-1 argument
    assert code == 1 and "not UTF-8" in one_error_line(err)
    code, _, err = cli("score", "m", "a b", "--bogus")
    assert code == 1 and "(see: rnnlm score --help)" in one_error_line(err)
    code, _, err = cli("models", "--timeout", "0")
    assert code == 1 and "must be a number > 0" in one_error_line(err)
    code, _, err = cli("train", "m6", "--server-path", "x.txt", "--epochs", "0")
    line = one_error_line(err)
    assert code == 1 and "--epochs" in line and "train_config" not in line
    code, _, err = cli("score", "m", "the", "--no-bos", "--no-eos", "--json")
    assert code == 1 and "leaves nothing to score" in one_error_line(err)
    code, _, err = cli("model", "nosuch")
    assert one_error_line(err).count("list") == 1  # the hint once, not twice

    with LMClient(server.address) as client:
        job_id = client.model("m").versions[0].job_id
    code, out, err = cli("plot", job_id, "-o", str(tmp_path / "curves"))
    assert code == 0, err
    assert out.strip().endswith("curves.png") and (tmp_path / "curves.png").stat().st_size > 0
    code, _, err = cli("plot", job_id, "-o", str(tmp_path / "curves.txt"))
    assert code == 1 and ".png, .svg, .pdf" in one_error_line(err)
    assert not (tmp_path / "curves.txt").exists()
