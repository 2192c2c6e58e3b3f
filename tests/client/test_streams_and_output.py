"""Result types and what the CLI prints: checked without a server (stream retries: in
test_retries.py, against a real one)."""

from __future__ import annotations

import io
from datetime import timezone

from rnnlm.client import _output as out
from rnnlm.client import _progress as progress
from rnnlm.client.cli import main
from rnnlm.client.types import (
    GeneratedToken,
    ModelInfo,
    TrainingEvent,
    TrainingJob,
    TrainingProgress,
)
from rnnlm.v1 import rnnlm_pb2 as pb

# -- result types ---------------------------------------------------------------------------


def test_training_job_from_pb():
    msg = pb.TrainingJob(
        job_id="j-1",
        model_id="m",
        state=pb.JOB_STATE_EARLY_STOPPED,
        model=pb.ModelConfig(cell="lstm", hidden_size=32),
        training=pb.TrainingOptions(epochs=3, clip=0),
        progress=pb.TrainingProgress(kind="epoch", epoch=2, epochs=3, valid_perplexity=90.5),
        model_version=4,
    )
    msg.created_at.FromSeconds(1_700_000_000)
    job = TrainingJob.from_pb(msg)
    assert job.state == "early_stopped" and job.done
    assert job.model_config == {"cell": "lstm", "hidden_size": 32}  # only what was set
    assert job.training == {"epochs": 3, "clip": 0.0}
    assert job.created_at.tzinfo == timezone.utc and job.updated_at is None
    assert job.progress.valid_perplexity == 90.5 and job.progress.valid_loss is None
    assert TrainingJob.from_pb(pb.TrainingJob(state=pb.JOB_STATE_RUNNING)).progress is None


def test_training_event_kinds():
    state = pb.TrainingEvent(
        event_id="7", state=pb.JobStateChange(state=pb.JOB_STATE_COMPLETED, model_version=2)
    )
    ev = TrainingEvent.from_pb(state)
    assert (ev.kind, ev.state, ev.model_version, ev.final) == ("state", "completed", 2, True)
    ev = TrainingEvent.from_pb(pb.TrainingEvent(event_id="8", checkpoint_step=50))
    assert (ev.kind, ev.checkpoint_step, ev.final) == ("checkpoint", 50, False)


def test_model_info_current_version():
    msg = pb.Model(
        model_id="m",
        state=pb.MODEL_STATE_READY,
        current_version=2,
        versions=[pb.ModelVersion(version=2, valid_perplexity=80.0), pb.ModelVersion(version=1)],
        config=pb.ModelConfig(cell="gru"),
    )
    info = ModelInfo.from_pb(msg)
    assert info.state == "ready" and info.current.valid_perplexity == 80.0
    assert info.versions[1].valid_perplexity is None
    assert "valid ppl" in out.models_table([info]) and "80.0" in out.models_table([info])


# -- output ---------------------------------------------------------------------------------


def _token(sentence, token, reason=0):
    return GeneratedToken.from_pb(
        pb.GenerateResponse(sentence=sentence, token=token, logprob=-1.0, finish_reason=reason)
    )


def test_interleaved_sentences_print_on_their_own_lines():
    buf = io.StringIO()
    printer = out.SentencePrinter(buf, prompt="so")
    for t in [
        _token(0, "the"),
        _token(1, "a"),
        _token(1, "dog", pb.FINISH_REASON_LENGTH),
        _token(0, "cat"),
        _token(0, "SENTENCE_END", pb.FINISH_REASON_END),
        _token(2, "it"),
    ]:
        printer.add(t)
    printer.close()
    assert buf.getvalue() == "so the cat\nso a dog\nso it\n"


def test_progress_without_a_terminal_is_one_line_per_event():
    buf = io.StringIO()
    view = progress.ProgressView(buf)
    snapshot = TrainingProgress("step", 1, 3, 50, 150, 5.0, 148.4, 1234.0, 0.005, 1.0, 9.0, 75.0)
    view.event(TrainingEvent("1", None, "progress", progress=snapshot))
    view.event(TrainingEvent("2", None, "checkpoint", checkpoint_step=50))
    view.event(TrainingEvent("3", None, "state", state="failed", error="out of memory"))
    view.close()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/3  step 50/150  loss 5.000  ppl 148.4")
    assert "ETA 1m15s" in lines[0] and "\r" not in buf.getvalue()
    assert lines[1:] == ["checkpoint written at step 50", "job failed"]


# -- the command line -----------------------------------------------------------------------


def test_usage_errors_exit_1_in_one_line(capsys):
    assert main(["frobnicate"]) == 1
    assert main(["train", "m", "corpus.txt", "--option", "bogus=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown training option 'bogus'" in err
    assert len(err.splitlines()) == 2 and all(e.startswith("error: ") for e in err.splitlines())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_bar_with_epoch_ends_printed_above_it():
    screen = Terminal()
    view = progress.ProgressView(screen)
    for step, kind in [(1, "step"), (40, "step"), (75, "epoch")]:
        valid = {"valid_loss": 5.1, "valid_perplexity": 160.0} if kind == "epoch" else {}
        p = TrainingProgress(kind, 1, 2, step, 150, 5.0, 148.4, 1234.0, 0.005, 1.0, 9.0, 75.0,
                             **valid)  # fmt: skip
        view.event(TrainingEvent(str(step), None, "progress", progress=p))
    view.event(TrainingEvent("9", None, "state", state="completed", model_version=1))
    view.close()
    text = screen.getvalue()
    assert "training:" in text and "75/150" in text and "\r" in text  # redrawn in place
    assert "epoch 1/2" in text and "tok/s" in text
    assert "end of epoch 1/2  step 75/150  loss 5.000  ppl 148.4  valid ppl 160.0" in text
    assert "job completed (model version 1)" in text


def test_an_unreachable_server_is_an_error_line_not_a_traceback(capsys):
    assert main(["--target", "127.0.0.1:1", "--timeout", "5", "models"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.rstrip().endswith("(UNAVAILABLE)")
    assert "Traceback" not in err
