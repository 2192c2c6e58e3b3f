"""The identifiers clients send, and the store names built from them: one pattern each, here.

Every pattern is matched whole (``re.fullmatch``): ``re.match`` with ``$`` also accepts a
final newline, so ``"nl\\n"`` passed as a model id and failed only later, as a storage key,
after a model record of that name was written. Patterns are ASCII-only on purpose (``[0-9]``,
not ``\\d``, which matches other scripts' digits too): ids become file names and Redis keys.
"""

from __future__ import annotations

import re

from rnnlm.server.errors import InvalidArgument, quote

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}"
# Model ids name store keys and directories: short, and never "..".
MODEL_ID = re.compile(_NAME % 63)
# Job ids, Train request ids and the store's document ids.
ID = re.compile(_NAME % 127)
# A blob key: up to four name segments ("models/{id}/{version}/checkpoint").
BLOB_KEY = re.compile(rf"{_NAME % 127}(?:/{_NAME % 127}){{0,3}}")
# An uploaded corpus (or ARPA file): "c-" and the first 32 hex digits of its sha256.
CORPUS_ID = re.compile(r"c-[0-9a-f]{32}")
# An event id of the local store: a zero-padded sequence number.
LOCAL_EVENT_DIGITS = 20
LOCAL_EVENT_ID = re.compile(rf"[0-9]{{{LOCAL_EVENT_DIGITS}}}")


def matches(pattern: re.Pattern[str], value: object) -> bool:
    """Whether ``value`` is a string that ``pattern`` matches entirely."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def check_model_id(model_id: str) -> str:
    if not model_id:
        raise InvalidArgument("model_id is required")
    if not matches(MODEL_ID, model_id) or ".." in model_id:
        raise InvalidArgument(
            f"model_id {quote(model_id)} is not allowed: use 1-64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return model_id


def check_job_id(job_id: str) -> str:
    if not matches(ID, job_id):
        raise InvalidArgument(f"job_id {quote(job_id)} is malformed; use the id Train returned")
    return job_id


def check_request_id(request_id: str) -> str:
    """An optional Train request id ("" means none)."""
    if request_id and not matches(ID, request_id):
        raise InvalidArgument(
            f"request_id {quote(request_id)} is not allowed: use 1-128 letters, digits, '.', "
            "'_' or '-' (a UUID works)"
        )
    return request_id


def check_corpus_id(corpus_id: str, what: str = "corpus_id") -> str:
    if not matches(CORPUS_ID, corpus_id):
        raise InvalidArgument(
            f"{what} {quote(corpus_id)} is malformed; use the id the upload returned"
        )
    return corpus_id
