import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CorpusFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CORPUS_FORMAT_AUTO: _ClassVar[CorpusFormat]
    CORPUS_FORMAT_TEXT: _ClassVar[CorpusFormat]
    CORPUS_FORMAT_CSV: _ClassVar[CorpusFormat]

class ParagraphMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAGRAPH_MODE_BLANK_LINE: _ClassVar[ParagraphMode]
    PARAGRAPH_MODE_LINE: _ClassVar[ParagraphMode]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_EARLY_STOPPED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_INTERRUPTED: _ClassVar[JobState]

class Scorer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORER_UNSPECIFIED: _ClassVar[Scorer]
    SCORER_NEURAL: _ClassVar[Scorer]
    SCORER_NGRAM: _ClassVar[Scorer]
    SCORER_INTERPOLATED: _ClassVar[Scorer]

class LengthNorm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LENGTH_NORM_NONE: _ClassVar[LengthNorm]
    LENGTH_NORM_AVERAGE: _ClassVar[LengthNorm]
    LENGTH_NORM_GNMT: _ClassVar[LengthNorm]

class DecodingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECODING_METHOD_UNSPECIFIED: _ClassVar[DecodingMethod]
    DECODING_METHOD_SAMPLE: _ClassVar[DecodingMethod]
    DECODING_METHOD_GREEDY: _ClassVar[DecodingMethod]
    DECODING_METHOD_BEAM: _ClassVar[DecodingMethod]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_END: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_TRAINING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_EMPTY: _ClassVar[ModelState]
CORPUS_FORMAT_AUTO: CorpusFormat
CORPUS_FORMAT_TEXT: CorpusFormat
CORPUS_FORMAT_CSV: CorpusFormat
PARAGRAPH_MODE_BLANK_LINE: ParagraphMode
PARAGRAPH_MODE_LINE: ParagraphMode
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_EARLY_STOPPED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_INTERRUPTED: JobState
SCORER_UNSPECIFIED: Scorer
SCORER_NEURAL: Scorer
SCORER_NGRAM: Scorer
SCORER_INTERPOLATED: Scorer
LENGTH_NORM_NONE: LengthNorm
LENGTH_NORM_AVERAGE: LengthNorm
LENGTH_NORM_GNMT: LengthNorm
DECODING_METHOD_UNSPECIFIED: DecodingMethod
DECODING_METHOD_SAMPLE: DecodingMethod
DECODING_METHOD_GREEDY: DecodingMethod
DECODING_METHOD_BEAM: DecodingMethod
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_END: FinishReason
FINISH_REASON_LENGTH: FinishReason
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_TRAINING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_EMPTY: ModelState

class UploadCorpusRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: CorpusHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[CorpusHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class CorpusHeader(_message.Message):
    __slots__ = ("filename", "size_bytes", "sha256")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    filename: str
    size_bytes: int
    sha256: str
    def __init__(self, filename: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Corpus(_message.Message):
    __slots__ = ("corpus_id", "filename", "size_bytes", "sha256", "created_at")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, corpus_id: _Optional[str] = ..., filename: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListCorporaRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListCorporaResponse(_message.Message):
    __slots__ = ("corpora", "unreadable_ids")
    CORPORA_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    corpora: _containers.RepeatedCompositeFieldContainer[Corpus]
    unreadable_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, corpora: _Optional[_Iterable[_Union[Corpus, _Mapping]]] = ..., unreadable_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteCorpusRequest(_message.Message):
    __slots__ = ("corpus_id",)
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    def __init__(self, corpus_id: _Optional[str] = ...) -> None: ...

class DeleteCorpusResponse(_message.Message):
    __slots__ = ("corpus_id", "size_bytes", "damaged_record_removed")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_RECORD_REMOVED_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    size_bytes: int
    damaged_record_removed: bool
    def __init__(self, corpus_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., damaged_record_removed: _Optional[bool] = ...) -> None: ...

class CorpusSource(_message.Message):
    __slots__ = ("corpus_id", "server_path", "format", "csv_column", "paragraphs")
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CSV_COLUMN_FIELD_NUMBER: _ClassVar[int]
    PARAGRAPHS_FIELD_NUMBER: _ClassVar[int]
    corpus_id: str
    server_path: str
    format: CorpusFormat
    csv_column: str
    paragraphs: ParagraphMode
    def __init__(self, corpus_id: _Optional[str] = ..., server_path: _Optional[str] = ..., format: _Optional[_Union[CorpusFormat, str]] = ..., csv_column: _Optional[str] = ..., paragraphs: _Optional[_Union[ParagraphMode, str]] = ...) -> None: ...

class ModelConfig(_message.Message):
    __slots__ = ("cell", "vocab_size", "embed_size", "hidden_size", "num_layers", "dropout", "tie_weights", "activation", "lowercase", "dtype", "sentences", "words", "min_count", "ngram_order", "embed_dropout", "output_classes")
    CELL_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    EMBED_SIZE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TIE_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    MIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    NGRAM_ORDER_FIELD_NUMBER: _ClassVar[int]
    EMBED_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CLASSES_FIELD_NUMBER: _ClassVar[int]
    cell: str
    vocab_size: int
    embed_size: int
    hidden_size: int
    num_layers: int
    dropout: float
    tie_weights: bool
    activation: str
    lowercase: bool
    dtype: str
    sentences: str
    words: str
    min_count: int
    ngram_order: int
    embed_dropout: float
    output_classes: int
    def __init__(self, cell: _Optional[str] = ..., vocab_size: _Optional[int] = ..., embed_size: _Optional[int] = ..., hidden_size: _Optional[int] = ..., num_layers: _Optional[int] = ..., dropout: _Optional[float] = ..., tie_weights: _Optional[bool] = ..., activation: _Optional[str] = ..., lowercase: _Optional[bool] = ..., dtype: _Optional[str] = ..., sentences: _Optional[str] = ..., words: _Optional[str] = ..., min_count: _Optional[int] = ..., ngram_order: _Optional[int] = ..., embed_dropout: _Optional[float] = ..., output_classes: _Optional[int] = ...) -> None: ...

class TrainingOptions(_message.Message):
    __slots__ = ("epochs", "batch_size", "learning_rate", "optimizer", "clip", "bptt_truncate", "lr_decay", "valid_fraction", "patience", "max_length", "seed", "device", "log_every", "checkpoint_every", "weight_decay", "lr_patience")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    BPTT_TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    LR_DECAY_FIELD_NUMBER: _ClassVar[int]
    VALID_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOG_EVERY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    LR_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    clip: float
    bptt_truncate: int
    lr_decay: float
    valid_fraction: float
    patience: int
    max_length: int
    seed: int
    device: str
    log_every: int
    checkpoint_every: int
    weight_decay: float
    lr_patience: int
    def __init__(self, epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., optimizer: _Optional[str] = ..., clip: _Optional[float] = ..., bptt_truncate: _Optional[int] = ..., lr_decay: _Optional[float] = ..., valid_fraction: _Optional[float] = ..., patience: _Optional[int] = ..., max_length: _Optional[int] = ..., seed: _Optional[int] = ..., device: _Optional[str] = ..., log_every: _Optional[int] = ..., checkpoint_every: _Optional[int] = ..., weight_decay: _Optional[float] = ..., lr_patience: _Optional[int] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("model_id", "corpus", "model", "training", "request_id", "arpa_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CORPUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ARPA_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    corpus: CorpusSource
    model: ModelConfig
    training: TrainingOptions
    request_id: str
    arpa_id: str
    def __init__(self, model_id: _Optional[str] = ..., corpus: _Optional[_Union[CorpusSource, _Mapping]] = ..., model: _Optional[_Union[ModelConfig, _Mapping]] = ..., training: _Optional[_Union[TrainingOptions, _Mapping]] = ..., request_id: _Optional[str] = ..., arpa_id: _Optional[str] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("job_id", "model_id", "state", "error", "request_id", "corpus_id", "model", "training", "created_at", "updated_at", "progress", "checkpoint_step", "model_version", "server_id", "warnings", "phase")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CORPUS_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_STEP_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    model_id: str
    state: JobState
    error: str
    request_id: str
    corpus_id: str
    model: ModelConfig
    training: TrainingOptions
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    progress: TrainingProgress
    checkpoint_step: int
    model_version: int
    server_id: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    phase: str
    def __init__(self, job_id: _Optional[str] = ..., model_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., error: _Optional[str] = ..., request_id: _Optional[str] = ..., corpus_id: _Optional[str] = ..., model: _Optional[_Union[ModelConfig, _Mapping]] = ..., training: _Optional[_Union[TrainingOptions, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., checkpoint_step: _Optional[int] = ..., model_version: _Optional[int] = ..., server_id: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., phase: _Optional[str] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("kind", "epoch", "epochs", "step", "total_steps", "loss", "perplexity", "tokens_per_second", "learning_rate", "grad_norm", "elapsed_seconds", "eta_seconds", "valid_loss", "valid_perplexity")
    KIND_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VALID_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    perplexity: float
    tokens_per_second: float
    learning_rate: float
    grad_norm: float
    elapsed_seconds: float
    eta_seconds: float
    valid_loss: float
    valid_perplexity: float
    def __init__(self, kind: _Optional[str] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., perplexity: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., learning_rate: _Optional[float] = ..., grad_norm: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., valid_loss: _Optional[float] = ..., valid_perplexity: _Optional[float] = ...) -> None: ...

class TrainingEvent(_message.Message):
    __slots__ = ("event_id", "time", "progress", "checkpoint_step", "state")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_STEP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    time: _timestamp_pb2.Timestamp
    progress: TrainingProgress
    checkpoint_step: int
    state: JobStateChange
    def __init__(self, event_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., checkpoint_step: _Optional[int] = ..., state: _Optional[_Union[JobStateChange, _Mapping]] = ...) -> None: ...

class JobStateChange(_message.Message):
    __slots__ = ("state", "error", "model_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    error: str
    model_version: int
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., error: _Optional[str] = ..., model_version: _Optional[int] = ...) -> None: ...

class WatchTrainingJobRequest(_message.Message):
    __slots__ = ("job_id", "after_event_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_event_id: str
    def __init__(self, job_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ("model_id", "limit")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    limit: int
    def __init__(self, model_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs", "unreadable_ids")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    unreadable_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ..., unreadable_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DeleteTrainingJobResponse(_message.Message):
    __slots__ = ("job_id", "damaged_record_removed")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_RECORD_REMOVED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    damaged_record_removed: bool
    def __init__(self, job_id: _Optional[str] = ..., damaged_record_removed: _Optional[bool] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ResumeTrainingJobRequest(_message.Message):
    __slots__ = ("job_id", "epochs")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epochs: int
    def __init__(self, job_id: _Optional[str] = ..., epochs: _Optional[int] = ...) -> None: ...

class Sentence(_message.Message):
    __slots__ = ("text", "words")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    words: Words
    def __init__(self, text: _Optional[str] = ..., words: _Optional[_Union[Words, _Mapping]] = ...) -> None: ...

class Words(_message.Message):
    __slots__ = ("words",)
    WORDS_FIELD_NUMBER: _ClassVar[int]
    words: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, words: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreSentenceRequest(_message.Message):
    __slots__ = ("model_id", "sentences", "rank", "omit_tokens", "scorer", "neural_weight", "bos", "eos", "length_norm", "length_alpha")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    OMIT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    NEURAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    BOS_FIELD_NUMBER: _ClassVar[int]
    EOS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_NORM_FIELD_NUMBER: _ClassVar[int]
    LENGTH_ALPHA_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    sentences: _containers.RepeatedCompositeFieldContainer[Sentence]
    rank: bool
    omit_tokens: bool
    scorer: Scorer
    neural_weight: float
    bos: bool
    eos: bool
    length_norm: LengthNorm
    length_alpha: float
    def __init__(self, model_id: _Optional[str] = ..., sentences: _Optional[_Iterable[_Union[Sentence, _Mapping]]] = ..., rank: _Optional[bool] = ..., omit_tokens: _Optional[bool] = ..., scorer: _Optional[_Union[Scorer, str]] = ..., neural_weight: _Optional[float] = ..., bos: _Optional[bool] = ..., eos: _Optional[bool] = ..., length_norm: _Optional[_Union[LengthNorm, str]] = ..., length_alpha: _Optional[float] = ...) -> None: ...

class TokenScore(_message.Message):
    __slots__ = ("token", "logprob", "unknown", "ngram_order")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    NGRAM_ORDER_FIELD_NUMBER: _ClassVar[int]
    token: str
    logprob: float
    unknown: bool
    ngram_order: int
    def __init__(self, token: _Optional[str] = ..., logprob: _Optional[float] = ..., unknown: _Optional[bool] = ..., ngram_order: _Optional[int] = ...) -> None: ...

class SentenceScore(_message.Message):
    __slots__ = ("index", "words", "logprob", "log10prob", "perplexity", "tokens", "unknown_words", "rank_score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    LOG10PROB_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_WORDS_FIELD_NUMBER: _ClassVar[int]
    RANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    words: _containers.RepeatedScalarFieldContainer[str]
    logprob: float
    log10prob: float
    perplexity: float
    tokens: _containers.RepeatedCompositeFieldContainer[TokenScore]
    unknown_words: _containers.RepeatedScalarFieldContainer[str]
    rank_score: float
    def __init__(self, index: _Optional[int] = ..., words: _Optional[_Iterable[str]] = ..., logprob: _Optional[float] = ..., log10prob: _Optional[float] = ..., perplexity: _Optional[float] = ..., tokens: _Optional[_Iterable[_Union[TokenScore, _Mapping]]] = ..., unknown_words: _Optional[_Iterable[str]] = ..., rank_score: _Optional[float] = ...) -> None: ...

class ScoreSentenceResponse(_message.Message):
    __slots__ = ("model_id", "model_version", "scores", "scorer", "neural_weight")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    NEURAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: int
    scores: _containers.RepeatedCompositeFieldContainer[SentenceScore]
    scorer: Scorer
    neural_weight: float
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[SentenceScore, _Mapping]]] = ..., scorer: _Optional[_Union[Scorer, str]] = ..., neural_weight: _Optional[float] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model_id", "prompt_text", "prompt_words", "num_sentences", "min_tokens", "max_tokens", "temperature", "top_k", "top_p", "seed", "method", "beam_width")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TEXT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_WORDS_FIELD_NUMBER: _ClassVar[int]
    NUM_SENTENCES_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BEAM_WIDTH_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    prompt_text: str
    prompt_words: Words
    num_sentences: int
    min_tokens: int
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    method: DecodingMethod
    beam_width: int
    def __init__(self, model_id: _Optional[str] = ..., prompt_text: _Optional[str] = ..., prompt_words: _Optional[_Union[Words, _Mapping]] = ..., num_sentences: _Optional[int] = ..., min_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., method: _Optional[_Union[DecodingMethod, str]] = ..., beam_width: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("sentence", "token", "logprob", "finish_reason", "text", "model_version")
    SENTENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    sentence: int
    token: str
    logprob: float
    finish_reason: FinishReason
    text: str
    model_version: int
    def __init__(self, sentence: _Optional[int] = ..., token: _Optional[str] = ..., logprob: _Optional[float] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., text: _Optional[str] = ..., model_version: _Optional[int] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("version", "created_at", "job_id", "checkpoint_bytes", "sha256", "training_status", "epochs_trained", "train_loss", "valid_perplexity", "ngram_valid_perplexity", "interpolated_valid_perplexity", "neural_weight", "ngram_order", "ngram_source")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STATUS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_TRAINED_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALID_PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    NGRAM_VALID_PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATED_VALID_PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    NEURAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NGRAM_ORDER_FIELD_NUMBER: _ClassVar[int]
    NGRAM_SOURCE_FIELD_NUMBER: _ClassVar[int]
    version: int
    created_at: _timestamp_pb2.Timestamp
    job_id: str
    checkpoint_bytes: int
    sha256: str
    training_status: str
    epochs_trained: int
    train_loss: float
    valid_perplexity: float
    ngram_valid_perplexity: float
    interpolated_valid_perplexity: float
    neural_weight: float
    ngram_order: int
    ngram_source: str
    def __init__(self, version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., job_id: _Optional[str] = ..., checkpoint_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., training_status: _Optional[str] = ..., epochs_trained: _Optional[int] = ..., train_loss: _Optional[float] = ..., valid_perplexity: _Optional[float] = ..., ngram_valid_perplexity: _Optional[float] = ..., interpolated_valid_perplexity: _Optional[float] = ..., neural_weight: _Optional[float] = ..., ngram_order: _Optional[int] = ..., ngram_source: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("model_id", "state", "current_version", "versions", "config", "training", "vocabulary_size", "active_job_id", "created_at", "updated_at", "vocabulary")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    state: ModelState
    current_version: int
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    config: ModelConfig
    training: TrainingOptions
    vocabulary_size: int
    active_job_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    vocabulary: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model_id: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., current_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., config: _Optional[_Union[ModelConfig, _Mapping]] = ..., training: _Optional[_Union[TrainingOptions, _Mapping]] = ..., vocabulary_size: _Optional[int] = ..., active_job_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., vocabulary: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "unreadable_ids")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    UNREADABLE_IDS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    unreadable_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., unreadable_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id", "include_vocabulary")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_VOCABULARY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    include_vocabulary: bool
    def __init__(self, model_id: _Optional[str] = ..., include_vocabulary: _Optional[bool] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("model_id", "versions_deleted", "damaged_record_removed")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_DELETED_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_RECORD_REMOVED_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    versions_deleted: int
    damaged_record_removed: bool
    def __init__(self, model_id: _Optional[str] = ..., versions_deleted: _Optional[int] = ..., damaged_record_removed: _Optional[bool] = ...) -> None: ...

class AttachNgramModelRequest(_message.Message):
    __slots__ = ("model_id", "arpa_id", "neural_weight")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ARPA_ID_FIELD_NUMBER: _ClassVar[int]
    NEURAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    arpa_id: str
    neural_weight: float
    def __init__(self, model_id: _Optional[str] = ..., arpa_id: _Optional[str] = ..., neural_weight: _Optional[float] = ...) -> None: ...

class ExportArpaRequest(_message.Message):
    __slots__ = ("model_id", "version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: int
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ArpaChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
