"""The asyncio client, :class:`AsyncLMClient`: the methods of :class:`rnnlm.client.LMClient`
as coroutines, with streams as async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import Any

import grpc

from rnnlm.client._calls import Awaiting, Call, Flow, FlowRun, ServerStream, Step, T, rpc_errors
from rnnlm.client._core import ClientCore
from rnnlm.client._rescore import rescore_async
from rnnlm.client._retry import Resumption
from rnnlm.v1 import rnnlm_pb2_grpc


class AsyncLMClient(ClientCore[Awaiting]):
    """A connection to an rnnlm server for asyncio code; arguments as for ``LMClient``.

    Create it inside a running event loop, and close it with ``await client.close()`` or
    ``async with``. Leaving a stream early: wrap it in ``contextlib.aclosing`` so that the
    call is cancelled at once rather than when the iterator is garbage-collected.
    """

    _channel: grpc.aio.Channel
    _channels = grpc.aio
    _blocking: grpc.Channel | None = None  # for client streams (see _client_stream)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._blocking is not None:
            self._blocking.close()
        await self._channel.close()

    async def __aenter__(self) -> AsyncLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, flow: Flow[T]) -> T:
        run = FlowRun(flow)
        for step in run:
            try:
                run.send(await self._step(step))
            except BaseException as err:  # into the flow, whose `with` blocks clean up
                run.throw(err)
        return run.result

    async def _step(self, step: Step) -> Any:
        if isinstance(step, Call):
            with rpc_errors(step.method):
                if callable(step.request):  # a client stream, read from a file
                    return await self._client_stream(step, step.request)
                return await self._invoke(step, step.request)
        async with aclosing(step.source.open(self)) as items:
            async for item in items:
                await asyncio.to_thread(step.sink, item) if step.blocking_io else step.sink(item)
        return None

    async def _client_stream(self, step: Call, requests: Callable[[], Iterator[Any]]) -> Any:
        """A client-streaming call made on a blocking channel, whose threads also read the
        file. grpc.aio answers INTERNAL ("Internal error from Core") instead of the server's
        status when the server ends the call before the last message is written, as
        UploadCorpus does when it refuses a header (grpc/grpc#36066); the blocking API keeps
        the server's status."""
        if self._blocking is None:
            self._blocking = self._open_channel(grpc)
        rpc = getattr(rnnlm_pb2_grpc.LanguageModelServiceStub(self._blocking), step.method)
        messages = await asyncio.to_thread(requests)  # hashing a file reads it whole
        future = rpc.future(messages, timeout=self._timeout(step), metadata=self._metadata)
        try:
            return await asyncio.to_thread(future.result)
        except asyncio.CancelledError:
            future.cancel()  # which also ends the thread's wait
            raise

    _rescore = staticmethod(rescore_async)

    async def _server_stream(self, source: ServerStream[T]) -> AsyncGenerator[T, None]:
        resume = Resumption(source, self._policy)
        while resume.pending:
            await asyncio.sleep(resume.delay)
            with resume.attempt(self._rpc(source.method), self._metadata) as call:
                async for msg in call:
                    for item in resume.received(msg):
                        yield item
