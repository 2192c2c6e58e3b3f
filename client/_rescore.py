"""Rescoring an n-best list, the part both clients share: the entries cut into requests,
the responses turned into rescored entries, the groups re-ranked, errors pointed at lines.
The clients add only the calls, up to ``max_in_flight`` at a time, answered in order.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from rnnlm.client._common import SENTENCES_PER_REQUEST, ScoreOptions, score_request
from rnnlm.client.errors import Internal, ResourceExhausted, RnnlmError
from rnnlm.client.nbest import (
    NBestEntry,
    Rescored,
    check_feature_name,
    read_nbest,
    rerank,
    rescored,
)
from rnnlm.v1 import rnnlm_pb2 as pb

#: Hypotheses per request: the server's default --max-sentences-per-request.
DEFAULT_BATCH_SIZE = SENTENCES_PER_REQUEST
#: Requests in flight: enough to keep a local server's batcher and cores busy.
DEFAULT_IN_FLIGHT = 4

Batch = list[NBestEntry]
Call = Callable[[pb.ScoreSentenceRequest], pb.ScoreSentenceResponse]
AsyncCall = Callable[[pb.ScoreSentenceRequest], Awaitable[pb.ScoreSentenceResponse]]


@dataclass(frozen=True)
class RescorePlan:
    """What a rescore call asked for, with the defaults of both clients."""

    model_id: str
    feature: str = "RNNLM0"
    weight: float | None = None
    log10: bool = False
    format: str = "auto"
    options: ScoreOptions = field(default_factory=ScoreOptions)
    batch_size: int = DEFAULT_BATCH_SIZE
    max_in_flight: int = DEFAULT_IN_FLIGHT

    def __post_init__(self) -> None:
        check_feature_name(self.feature)
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise ValueError(
                "batch_size and max_in_flight must be >= 1; "
                f"got {self.batch_size}, {self.max_in_flight}"
            )

    @classmethod
    def create(
        cls,
        model_id: str,
        *,
        scorer: str | None = None,
        neural_weight: float | None = None,
        bos: bool | None = None,
        eos: bool | None = None,
        **settings: Any,
    ) -> RescorePlan:
        """The plan of ``rescore(nbest, model_id, **options)``: ``settings`` are the fields
        above, the others the :class:`ScoreOptions` that rescoring takes. An empty
        hypothesis is scored (an n-best list may hold one), not refused."""
        options = ScoreOptions(scorer, neural_weight, bos, eos, allow_empty=True)
        return cls(model_id, options=options, **settings)

    def batches(self, nbest: Any) -> Iterator[Batch]:
        """The entries of ``nbest`` (entries, lines or text) in requests of at most
        ``batch_size``, in order."""
        return _batches(self._entries(nbest), self.batch_size)

    def request(self, batch: Batch) -> pb.ScoreSentenceRequest | None:
        """The request for ``batch``; None when it holds only blank lines (no call)."""
        texts = [e.hypothesis for e in batch if e.hypothesis is not None]
        if not texts:
            return None
        return score_request(self.model_id, texts, False, True, self.options)

    def score(self, batch: Batch, call: Call) -> list[Rescored]:
        """Score ``batch`` with ``call``; errors name the input lines."""
        request = self.request(batch)
        with self.naming_lines(batch):
            return self.convert(batch, call(request) if request is not None else None)

    async def ascore(self, batch: Batch, call: AsyncCall) -> list[Rescored]:
        request = self.request(batch)
        with self.naming_lines(batch):
            return self.convert(batch, await call(request) if request is not None else None)

    def convert(self, batch: Batch, response: pb.ScoreSentenceResponse | None) -> list[Rescored]:
        """The batch's entries with their feature values, in input order."""
        values: list[float] = []
        if response is not None:
            ordered = sorted(response.scores, key=lambda s: s.index)
            values = [s.log10prob if self.log10 else s.logprob for s in ordered]
        expected = sum(e.scored for e in batch)
        if len(values) != expected:
            raise Internal(f"{len(values)} scores for {expected} sentences", method="ScoreSentence")
        scored = iter(values)
        return [
            rescored(e, self.feature, next(scored) if e.scored else None, self.weight)
            for e in batch
        ]

    @contextmanager
    def naming_lines(self, batch: Batch) -> Iterator[None]:
        """An ``RnnlmError`` raised inside, with each ``sentences[i]`` of its message
        pointed at its input line."""
        try:
            yield
        except RnnlmError as err:
            lines = [e.line_no for e in batch if e.scored]

            def at_line(match: re.Match) -> str:
                i = int(match.group(1))
                return f"{match.group(0)} (line {lines[i]})" if i < len(lines) else match.group(0)

            details = re.sub(r"sentences\[(\d+)\]", at_line, err.details)
            if isinstance(err, ResourceExhausted) and "sentences in one request" in details:
                details += f"; rescore with a batch_size (--batch-size) below {self.batch_size}"
            raise type(err)(details, code=err.code, method=err.method) from err

    def _entries(self, nbest: Any) -> Iterator[NBestEntry]:
        if isinstance(nbest, str):
            return read_nbest(nbest, self.format)
        if isinstance(nbest, bytes):  # lines split at b"\n" only, each decoded on its own
            return read_nbest(io.BytesIO(nbest), self.format)
        items = iter(nbest)
        first = next(items, None)
        if first is None:
            return iter(())
        rejoined = chain([first], items)
        if isinstance(first, NBestEntry):
            return rejoined
        return read_nbest(rejoined, self.format)


class Regrouper:
    """Rescored entries in input order; with ``rerank``, each group re-ranked as soon as it
    is complete (a group may span several requests)."""

    def __init__(self, rerank: bool) -> None:
        self._rerank = rerank
        self._group: list[Rescored] = []

    def add(self, items: Iterable[Rescored]) -> list[Rescored]:
        if not self._rerank:
            return list(items)
        done: list[Rescored] = []
        for item in items:
            if self._group and item.entry.group != self._group[0].entry.group:
                done += rerank(self._group)
                self._group = []
            self._group.append(item)
        return done

    def flush(self) -> list[Rescored]:
        done, self._group = rerank(self._group), []
        return done


def _group_parts(entries: Iterable[NBestEntry], limit: int) -> Iterator[Batch]:
    """Runs of one group's entries, at most ``limit`` each."""
    part: Batch = []
    for entry in entries:
        if part and (entry.group != part[0].group or len(part) == limit):
            yield part
            part = []
        part.append(entry)
    if part:
        yield part


def _batches(entries: Iterable[NBestEntry], limit: int) -> Iterator[Batch]:
    """Requests of at most ``limit`` entries, in input order. A group goes whole into one
    request where it fits, so the server scores a list's hypotheses (which share prefixes)
    together; a group larger than a request is split."""
    batch: Batch = []
    for part in _group_parts(entries, limit):
        if len(batch) + len(part) > limit:
            yield batch
            batch = []
        batch.extend(part)
    if batch:
        yield batch


def rescore_sync(plan: RescorePlan, nbest: Any, call: Call) -> Generator[Rescored, None, None]:
    """Rescore with ``call`` (a blocking ScoreSentence) from up to ``plan.max_in_flight``
    threads, yielding in input order (each group re-ranked when a weight is set)."""
    regroup = Regrouper(plan.weight is not None)
    with ThreadPoolExecutor(plan.max_in_flight, thread_name_prefix="rnnlm-rescore") as pool:
        pending: deque[Future[list[Rescored]]] = deque()
        try:
            for batch in plan.batches(nbest):
                pending.append(pool.submit(plan.score, batch, call))
                if len(pending) >= plan.max_in_flight:  # wait for the oldest: keeps order
                    yield from regroup.add(pending.popleft().result())
            while pending:
                yield from regroup.add(pending.popleft().result())
        finally:  # an error or a consumer that stopped early: send nothing more
            for future in pending:
                future.cancel()
    yield from regroup.flush()


async def rescore_async(
    plan: RescorePlan, nbest: Any, call: AsyncCall
) -> AsyncGenerator[Rescored, None]:
    """The asyncio twin of :func:`rescore_sync`: up to ``plan.max_in_flight`` tasks."""
    regroup = Regrouper(plan.weight is not None)
    pending: deque[asyncio.Future[list[Rescored]]] = deque()
    try:
        for batch in plan.batches(nbest):
            pending.append(asyncio.ensure_future(plan.ascore(batch, call)))
            if len(pending) >= plan.max_in_flight:
                for item in regroup.add(await pending.popleft()):
                    yield item
        while pending:
            for item in regroup.add(await pending.popleft()):
                yield item
    finally:
        for task in pending:
            task.cancel()
    for item in regroup.flush():
        yield item
