"""The rnnlm client library: talk to an rnnlm server from Python (grpcio and protobuf only).

    from rnnlm.client import LMClient, NotFound

    with LMClient("localhost:50051", timeout=30) as client:
        corpus = client.upload_corpus("corpus.txt")
        job = client.train("news", corpus, cell="gru", hidden_size=256, epochs=5)
        for event in client.watch(job.job_id):  # progress until the job ends
            print(event.kind, event.progress or event.state)
        best = client.rank("news", ["the cat sat on the mat .", "mat the on sat cat the ."])
        print(best[0].index, best[0].log10prob, best[0].perplexity)
        for s in client.generate("news", num_sentences=3, seed=1):
            print(s.text)
        with open("nbest.txt", "rb") as f:  # a Moses n-best list, with the score added
            for r in client.rescore_stream(f, "news", feature="RNNLM0"):
                print(r.line(), end="")

``AsyncLMClient`` offers the same methods as coroutines (streams as async iterators).
Failed calls raise subclasses of :class:`RnnlmError` (``NotFound``, ``InvalidArgument``...);
``rnnlm`` on the command line (``rnnlm.client.cli``) wraps the same calls.
"""

from __future__ import annotations

from rnnlm.client._common import TLS, ScoreOptions
from rnnlm.client.aio import AsyncLMClient
from rnnlm.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RnnlmError,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
)
from rnnlm.client.nbest import NBestEntry, NBestFormatError, Rescored, read_nbest
from rnnlm.client.sync import LMClient
from rnnlm.client.types import (
    Corpus,
    GeneratedSentence,
    GeneratedToken,
    GradientFlow,
    Listing,
    ModelInfo,
    ModelVersion,
    ScoreResult,
    SentenceScore,
    TokenScore,
    TrainingEvent,
    TrainingJob,
    TrainingProgress,
)

__all__ = [
    "TLS",
    "Aborted",
    "AlreadyExists",
    "AsyncLMClient",
    "Cancelled",
    "Corpus",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GeneratedSentence",
    "GeneratedToken",
    "GradientFlow",
    "Internal",
    "InvalidArgument",
    "LMClient",
    "Listing",
    "ModelInfo",
    "ModelVersion",
    "NBestEntry",
    "NBestFormatError",
    "NotFound",
    "PermissionDenied",
    "Rescored",
    "ResourceExhausted",
    "RnnlmError",
    "ScoreOptions",
    "ScoreResult",
    "SentenceScore",
    "TokenScore",
    "TrainingEvent",
    "TrainingJob",
    "TrainingProgress",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
    "read_nbest",
]
