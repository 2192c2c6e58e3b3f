"""The server half of ``rnnlm demo``: a server in this process on a throwaway local store.

The client half (upload, train, rank, generate) is ``rnnlm.client.demo``; the CLI joins the
two. It lives here, not in the client, because the client never imports the server
(DESIGN.md section 1): the CLI's ``serve`` and ``demo`` commands are the one allowed edge,
and they reach the server only through this module and ``app``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rnnlm.server.app import RnnlmServer
from rnnlm.server.config import ServerConfig


@contextmanager
def local_server(store_dir: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(target, store_dir)`` of a server on 127.0.0.1 and a free port that stores
    under ``store_dir`` (created if missing), or under a temporary directory removed on the
    way out. The server stops on the way out, also on errors and Ctrl-C."""
    with ExitStack() as stack:  # unwinds in reverse: the server, then the directory
        if store_dir:
            Path(store_dir).mkdir(parents=True, exist_ok=True)
        else:
            store_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="rnnlm-demo-"))
        server = RnnlmServer(ServerConfig(address="127.0.0.1:0", store_dir=store_dir))
        port = server.start()
        stack.callback(server.stop, grace=2.0)
        yield f"127.0.0.1:{port}", store_dir
