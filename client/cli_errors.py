"""How ``rnnlm`` reports what went wrong: one line on stderr, ``error: <what was wrong and
what is allowed>``, with the command to type next where there is one, and exit status 1.
No traceback and no raw exception text reaches the person at the terminal
(``RNNLM_DEBUG=1`` shows the traceback of an unexpected one)."""

from __future__ import annotations

import argparse
import os
import re
from typing import NoReturn

import grpc

from rnnlm.client._output import eprint
from rnnlm.client.cli_training import TRAIN_FLAGS
from rnnlm.client.errors import RnnlmError
from rnnlm.client.nbest import NBestFormatError

# Every error exits with this status (a usage error too: one rule for scripts to test).
ERROR_EXIT = 1

_MODEL_CALLS = ("GetModel", "ScoreSentence", "Generate", "DeleteModel", "AttachNgramModel")
_MODEL_READS = ("MeasureGradientFlow", "ExportArpa")
_JOB_CALLS = ("GetTrainingJob", "WatchTrainingJob", "CancelTrainingJob", "DeleteTrainingJob")
# What to type next for a NOT_FOUND, by the call that failed (the server's message says
# which id it could not find; Train's is its corpus or ARPA file).
_NOT_FOUND_HINTS = {
    **dict.fromkeys((*_MODEL_CALLS, *_MODEL_READS), "rnnlm models lists the models"),
    **dict.fromkeys((*_JOB_CALLS, "ResumeTrainingJob"), "rnnlm jobs lists the jobs"),
    **dict.fromkeys(("DeleteCorpus", "Train"), "rnnlm corpora lists the uploaded corpora"),
}


class Parser(argparse.ArgumentParser):
    """Usage errors as every other error: one line, status 1, and where to read more."""

    def error(self, message: str) -> NoReturn:
        usage_error(message, self.prog)


def usage_error(message: str, prog: str) -> NoReturn:
    """A bad command line: one line, and the help that shows the right one."""
    eprint(f"error: {message} (see: {prog} --help)")
    raise SystemExit(ERROR_EXIT)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text[:20]!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text[:20]!r}")
    return value


def hint(err: RnnlmError, target: str) -> str:
    """The command (or flag) that helps with ``err``, or ""."""
    if err.code == grpc.StatusCode.NOT_FOUND:
        return _NOT_FOUND_HINTS.get(err.method, "")
    if err.code == grpc.StatusCode.UNAVAILABLE:
        return "rnnlm serve starts one, --target picks another"
    if err.code == grpc.StatusCode.UNAUTHENTICATED:
        return "give the server's key with --api-key or RNNLM_API_KEY"
    if err.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "sentences in one request" in err.details:
        return "a smaller --batch-size sends fewer a request"
    return ""


def report(err: BaseException, target: str) -> int:
    """Print ``err`` as one line; the exit status."""
    if isinstance(err, RnnlmError):
        details, more = as_flags(one_line(err.details)), hint(err, target)
        if "failed to connect" in details.lower():  # gRPC's words for a refused connection
            details = f"cannot reach a server at {target}: {details.rsplit(': ', 1)[-1].lower()}"
        eprint(f"error: {details}" + (f"; {more}" if more else "") + f" ({err.code.name})")
    elif isinstance(err, OSError) and err.filename is not None:
        # "[Errno 2] No such file or directory: 'x'" -> "cannot open x: no such file ..."
        reason = (err.strerror or type(err).__name__).lower()
        eprint(f"error: cannot open {err.filename}: {reason}")
    elif isinstance(err, UnicodeEncodeError):  # an argument in another encoding
        eprint(f"error: the text given is not UTF-8 (character {err.start + 1}); use UTF-8")
    elif isinstance(err, UnicodeDecodeError):
        eprint(f"error: the input is not UTF-8 text (byte {err.start}); save it as UTF-8")
    elif isinstance(err, (OSError, NBestFormatError, TypeError, ValueError)):
        eprint(f"error: {one_line(str(err))}")
    else:
        raise err
    if os.environ.get("RNNLM_DEBUG"):
        raise err
    return ERROR_EXIT


# The server names a configuration field as the API does ("train_config.epochs"); the CLI
# user typed a flag. Fields without a flag of their own go through --option.
_CONFIG_FIELD = re.compile(r"\b(?:model_config|train_config)\.(\w+)")


def as_flags(text: str) -> str:
    """A server message with its configuration fields named as the CLI's flags."""

    def flag(match: re.Match[str]) -> str:
        name = match[1]
        return "--" + name.replace("_", "-") if name in TRAIN_FLAGS else f"--option {name}"

    return _CONFIG_FIELD.sub(flag, text)


def one_line(text: str) -> str:
    return " ".join(text.split())
