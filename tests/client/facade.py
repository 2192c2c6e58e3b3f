"""``LMClient``'s interface over a real ``AsyncLMClient``, so that one test body runs
against both clients: each coroutine method is run to completion on an event loop (in a
thread of its own, so that tests may call from several threads), and each async iterator
is pulled item by item; closing the iterator early closes the async one (cancelling the
call), as with the blocking client."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, TypeVar

from rnnlm.client import AsyncLMClient, LMClient

T = TypeVar("T")


class AsyncFacade:
    """``AsyncFacade(target, **kwargs)``: an ``AsyncLMClient(target, **kwargs)`` that
    looks blocking. Use it as a context manager, or call ``close()``."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def connect() -> AsyncLMClient:  # grpc.aio wants its loop running
            return AsyncLMClient(target, **kwargs)

        self._client = self._run(connect())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _iterate(self, stream: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        try:
            while True:
                try:
                    item = self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._run(stream.aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args, **kwargs: self._run(attr(*args, **kwargs))
        if callable(attr):  # a stream: watch, generate_stream, rescore_stream
            return self._streaming(attr)
        return attr

    def _streaming(self, method: Callable[..., AsyncGenerator[Any, None]]) -> Callable[..., Any]:
        return lambda *args, **kwargs: self._iterate(method(*args, **kwargs))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> AsyncFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncFacade({self._client!r})"


#: The two clients, by the name a parametrised test shows.
CLIENTS: dict[str, Callable[..., Any]] = {"sync": LMClient, "asyncio": AsyncFacade}
