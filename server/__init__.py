"""rnnlm.server: the gRPC service that trains and serves language models.

    from rnnlm.server import RnnlmServer, ServerConfig

    server = RnnlmServer(ServerConfig(address="127.0.0.1:0", store_dir="data"))
    port = server.start()
    ...
    server.stop()

``rnnlm serve`` (or ``python -m rnnlm.server``) runs it from the command line.
"""

from rnnlm.server.app import RnnlmServer, main
from rnnlm.server.config import ServerConfig

__all__ = ["RnnlmServer", "ServerConfig", "main"]
