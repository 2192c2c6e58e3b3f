"""The blocking client, :class:`LMClient`: the methods of ``ClientCore`` run in the calling
thread, streams as iterators."""

from __future__ import annotations

import time
from collections.abc import Generator
from contextlib import closing
from typing import Any

import grpc

from rnnlm.client._calls import Blocking, Call, Flow, FlowRun, ServerStream, Step, T, rpc_errors
from rnnlm.client._core import ClientCore
from rnnlm.client._rescore import rescore_sync
from rnnlm.client._retry import Resumption


class LMClient(ClientCore[Blocking]):
    """A connection to an rnnlm server, or to several: ``target`` is ``host:port``, a list
    of them (or ``"a:p,b:p"``), or a gRPC name such as ``dns:///rnnlm-headless:50051``;
    calls are spread round robin over the addresses.

    Unary calls get a deadline of ``timeout`` seconds (all attempts together); streams
    (watching a job, streaming generation, uploading) have none unless one is passed, since
    training takes as long as it takes. Calls that are safe to repeat are retried
    ``retries`` times (gRPC allows at most 4) on UNAVAILABLE, with exponential backoff from
    ``backoff`` seconds; a watch is resumed after its last event. Failures raise
    :class:`rnnlm.client.errors.RnnlmError` subclasses. ``api_key`` is sent as the
    ``x-api-key`` metadata (servers that require one ask for it on the calls that change
    state). ``tls=True`` (system CAs) or ``tls=TLS(ca_file=...)`` selects TLS; ``credentials``
    (``grpc.ssl_channel_credentials(...)``) gives full control instead.
    """

    _channel: grpc.Channel
    _channels = grpc

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> LMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: Flow[T]) -> T:
        run = FlowRun(flow)
        for step in run:
            try:
                run.send(self._step(step))
            except BaseException as err:  # into the flow, whose `with` blocks clean up
                run.throw(err)
        return run.result

    def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            request = step.request() if callable(step.request) else step.request
            with rpc_errors(step.method):
                return self._invoke(step, request)
        with closing(step.source.open(self)) as items:
            for item in items:
                step.sink(item)
        return None

    _rescore = staticmethod(rescore_sync)

    def _server_stream(self, source: ServerStream[T]) -> Generator[T, None, None]:
        resume = Resumption(source, self._policy)
        while resume.pending:
            time.sleep(resume.delay)
            with resume.attempt(self._rpc(source.method), self._metadata) as call:
                for msg in call:
                    yield from resume.received(msg)
