"""The asyncio client, :class:`AsyncLMClient`: the methods of :class:`rnnlm.client.LMClient`
as coroutines, with streams as async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import grpc

from rnnlm.client._calls import Awaiting, Call, Flow, FlowRun, ServerStream, Step, T, rpc_errors
from rnnlm.client._core import ClientCore
from rnnlm.client._rescore import rescore_async
from rnnlm.client._retry import Resumption


async def _in_thread(requests: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking iterator (a corpus file read in chunks) driven from a worker thread, so
    that reading the file does not stall the event loop."""
    done = object()
    while (item := await asyncio.to_thread(next, requests, done)) is not done:
        yield item


class AsyncLMClient(ClientCore[Awaiting]):
    """A connection to an rnnlm server for asyncio code; arguments as for ``LMClient``.

    Create it inside a running event loop, and close it with ``await client.close()`` or
    ``async with``. Leaving a stream early: wrap it in ``contextlib.aclosing`` so that the
    call is cancelled at once rather than when the iterator is garbage-collected.
    """

    _channel: grpc.aio.Channel
    _channels = grpc.aio

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
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
            request: Any = step.request
            if callable(request):  # a client stream, read from a file
                request = _in_thread(await asyncio.to_thread(request))
            with rpc_errors(step.method):
                return await self._invoke(step, request)
        async with aclosing(step.source.open(self)) as items:
            async for item in items:
                await asyncio.to_thread(step.sink, item) if step.blocking_io else step.sink(item)
        return None

    _rescore = staticmethod(rescore_async)

    async def _server_stream(self, source: ServerStream[T]) -> AsyncGenerator[T, None]:
        resume = Resumption(source, self._policy)
        while resume.pending:
            await asyncio.sleep(resume.delay)
            with resume.attempt(self._rpc(source.method), self._metadata) as call:
                async for msg in call:
                    yield resume.received(msg)
