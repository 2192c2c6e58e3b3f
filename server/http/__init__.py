"""The OpenAI-compatible HTTP front end (``rnnlm serve --http-address HOST:PORT``).

It runs in the gRPC server's process, on the same ``Serving`` (model cache, batchers,
stream slots, limits) and the same API key and TLS settings, served by uvicorn in a thread
of its own. Needs the ``http`` extra (FastAPI, uvicorn), which the ``server`` extra pulls in.

Modules: ``schema`` (bodies, and so the OpenAPI document), ``tokens`` (prompts as words,
the tokenizer endpoints), ``stops`` (stop strings), ``completions`` (the completions on the
service core), ``errors`` (statuses and JSON errors), ``gate`` (what every call passes),
``app`` (routes), ``front_end`` (uvicorn in a thread, started and stopped with the server).
"""

from rnnlm.server.http.front_end import HttpFrontEnd

__all__ = ["HttpFrontEnd"]
