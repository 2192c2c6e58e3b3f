"""How one client method is written once for both clients (as redis-py shares one command
core between its blocking and asyncio clients).

A method that returns a value is a *flow*: a generator that yields the steps to take (a
:class:`Call`, or a :class:`Drain` that consumes a stream) and returns the result. A method
that returns a stream builds a :class:`Source`. Neither does any I/O: ``LMClient`` runs the
steps blocking, ``AsyncLMClient`` awaits them. The decorators :class:`operation` and
:class:`streaming` make the one definition a real method of each client (installed by
``ClientCore.__init_subclass__``) and tell the type checker what it returns there: ``T`` on
a ``Shell[Blocking]`` (LMClient), a coroutine of ``T`` on a ``Shell[Awaiting]``.
"""

from __future__ import annotations

import inspect
from collections.abc import (
    AsyncGenerator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import grpc
from google.protobuf.message import Message

from rnnlm.client._rescore import RescorePlan
from rnnlm.client.errors import from_rpc_error
from rnnlm.client.nbest import Rescored

if TYPE_CHECKING:
    from typing_extensions import Self

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Mode = TypeVar("Mode")

#: A step's ``timeout`` when the call takes the client's (``None`` means no deadline).
CLIENT_TIMEOUT: Any = object()


class Blocking:
    """The mode of ``LMClient``: a method returns its result, a stream is an iterator."""


class Awaiting:
    """The mode of ``AsyncLMClient``: a method is a coroutine, a stream an async iterator."""


class Shell(Generic[Mode]):
    """What both clients derive from, through ``ClientCore[Mode]``."""


@dataclass(frozen=True)
class Call:
    """A unary call; the flow gets the response message. ``request`` may instead be a
    function that returns the request stream (a client-streaming call), which the asyncio
    client runs, and reads, in a worker thread."""

    method: str  # "Train", or "Health.Check" for the health service
    request: Message | Callable[[], Iterator[Message]]
    timeout: float | None = CLIENT_TIMEOUT


@dataclass(frozen=True)
class Source(Generic[T_co]):
    """What a streaming method builds; ``open(client)`` is the iterator of that client."""

    def open(self, client: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class ServerStream(Source[T]):
    """A server-streaming call: ``request(last)`` builds the request from the last message
    received (None at first); ``convert`` makes each message the items the caller sees, in
    order (most messages carry one; a GenerateResponse its ``following`` tokens too). Only
    a ``resumable`` stream is reopened by the client itself (``_retry.Resumption``)."""

    method: str
    request: Callable[[Any], Message]
    convert: Callable[[Any], Sequence[T]]
    timeout: float | None = None
    resumable: bool = False

    def open(self, client: Any) -> Any:
        return client._server_stream(self)


@dataclass(frozen=True)
class Rescoring(Source[Rescored]):
    """An n-best list rescored by concurrent ScoreSentence calls (threads or tasks)."""

    plan: RescorePlan
    nbest: Any

    def open(self, client: Any) -> Any:
        score = lambda request: client._step(Call("ScoreSentence", request))  # noqa: E731
        return client._rescore(self.plan, self.nbest, score)


@dataclass(frozen=True)
class Drain(Generic[T]):
    """Consume ``source`` inside a flow, each item passed to ``sink``; ``blocking_io``: the
    sink writes a file, so the asyncio client runs it in a worker thread."""

    source: Source[T]
    sink: Callable[[T], object]
    blocking_io: bool = False


Step = Call | Drain[Any]
Flow = Generator[Step, Any, T]


class FlowRun(Generic[T]):
    """Steps through a flow: iterate for its steps, ``send`` each one's result (or
    ``throw`` its error, so that the flow's ``with`` blocks see it); then ``result``."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._next: Callable[[], Step] = partial(flow.send, None)
        self.result: T

    def __iter__(self) -> FlowRun[T]:
        return self

    def __next__(self) -> Step:
        try:
            return self._next()
        except StopIteration as done:
            self.result = done.value
            raise StopIteration from None

    def send(self, value: Any) -> None:
        self._next = partial(self._flow.send, value)

    def throw(self, err: BaseException) -> None:
        self._next = partial(self._flow.throw, err)


@contextmanager
def rpc_errors(method: str) -> Iterator[None]:
    """A grpc.RpcError raised inside becomes the matching ``RnnlmError``."""
    try:
        yield
    except grpc.RpcError as err:
        raise from_rpc_error(err, method) from err


class _Defined(Generic[P, T]):
    """A method defined once in ``ClientCore``: ``build(client, ...)`` makes its flow or
    source; ``method(owner, mode)`` is the function a client of that mode gets."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    def method(self, owner: type, mode: type) -> Callable[..., Any]:
        func, name = self._wrap(self.build, mode), self.build.__name__
        func.__name__, func.__qualname__ = name, f"{owner.__name__}.{name}"
        func.__module__, func.__doc__ = owner.__module__, self.__doc__
        signature = inspect.signature(self.build)  # for help() and editors
        empty = inspect.Signature.empty
        func.__signature__ = signature.replace(return_annotation=empty)  # type: ignore[attr-defined]
        return func

    @staticmethod
    def _wrap(build: Callable[..., Any], mode: type) -> Callable[..., Any]:
        raise NotImplementedError


class operation(_Defined[P, T]):  # a decorator, named like one
    """A method that returns one value, written as a flow."""

    build: Callable[Concatenate[Any, P], Flow[T]]

    def __init__(self, build: Callable[Concatenate[Any, P], Flow[T]]) -> None:
        super().__init__(build)

    @staticmethod
    def _wrap(build: Callable[..., Any], mode: type) -> Callable[..., Any]:
        if mode is Blocking:
            return lambda client, *args, **kwargs: client._run(build(client, *args, **kwargs))

        async def method(client: Any, *args: Any, **kwargs: Any) -> Any:
            return await client._run(build(client, *args, **kwargs))

        return method

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(self, client: Shell[Blocking], owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: Shell[Awaiting], owner: type
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Any, owner: type) -> Any:
        return self  # reached from ClientCore only: each client has its own methods


class streaming(_Defined[P, T]):
    """A method that returns a stream: it builds a :class:`Source` of ``T``."""

    build: Callable[Concatenate[Any, P], Source[T]]

    def __init__(self, build: Callable[Concatenate[Any, P], Source[T]]) -> None:
        super().__init__(build)

    @staticmethod
    def _wrap(build: Callable[..., Any], mode: type) -> Callable[..., Any]:
        return lambda client, *args, **kwargs: build(client, *args, **kwargs).open(client)

    @overload
    def __get__(self, client: None, owner: type) -> Self: ...
    @overload
    def __get__(
        self, client: Shell[Blocking], owner: type
    ) -> Callable[P, Generator[T, None, None]]: ...
    @overload
    def __get__(
        self, client: Shell[Awaiting], owner: type
    ) -> Callable[P, AsyncGenerator[T, None]]: ...
    def __get__(self, client: Any, owner: type) -> Any:
        return self
