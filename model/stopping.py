"""Stopping long work early, between its steps.

Scoring and decoding take a ``should_stop`` callable and call it between sub-batches,
prefix-tree chunks and decoding steps; when it returns True they raise ``Stopped`` and the
partial work is dropped. What "stop" means is the caller's business (the server: the
client's deadline passed or it cancelled), so model/ stays free of gRPC: a plain callable.
"""

from __future__ import annotations

from collections.abc import Callable

ShouldStop = Callable[[], bool]


class Stopped(Exception):
    """The caller's ``should_stop`` said to stop: the work was left unfinished."""


def check(should_stop: ShouldStop | None) -> None:
    """Raise ``Stopped`` when ``should_stop`` (None: never) says so."""
    if should_stop is not None and should_stop():
        raise Stopped("stopped early: the caller no longer wants the result")
