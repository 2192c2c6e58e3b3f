"""The HTTP API's request and response bodies, as pydantic models: FastAPI validates requests
with them and writes the OpenAPI document (``/openapi.json``) from them.

The names and meanings are OpenAI's legacy completions API (``/v1/completions``), which
``lm-evaluation-harness`` and the OpenAI SDK speak; fields of that API this server cannot
honour are accepted only at their neutral value, so that a request never silently means
something else. Two fields are rnnlm's own: ``bos`` and ``scorer`` (docs/http.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rnnlm.model.interpolation import SCORERS

# Alternatives per token that ``logprobs`` may ask for (OpenAI allows 5, vLLM 20).
MAX_TOP_LOGPROBS = 20
# Stop strings per request, as OpenAI allows.
MAX_STOP_STRINGS = 4
# Completions per prompt: the generation limit (--max-generated-sentences) bounds it too.
Scorer = Literal[SCORERS]  # type: ignore[valid-type]  # ('neural', 'ngram', 'interpolated')


class Strict(BaseModel):
    """Unknown fields are refused by name, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StreamOptions(Strict):
    include_usage: bool = Field(False, description="End the stream with a chunk of usage.")


class CompletionRequest(Strict):
    model: str | None = Field(
        None,
        description="The model id (`rnnlm models`). Under /models/{model_id}/v1 it may be "
        "left out; if given it must be that id.",
        max_length=1000,
    )
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text, a list of texts, or token ids (the model's vocabulary indices, "
        "as /models/{model_id}/tokenize gives them), or a list of such lists. Each prompt is "
        "one sentence, or its start."
    )
    max_tokens: int | None = Field(
        16,
        ge=0,
        description="Words to generate after each prompt; 0: none (with echo: score the "
        "prompt). null: the server's default.",
    )
    echo: bool = Field(False, description="Return the prompt (and its log-probs) first.")
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Return the log-probability of every token, and this many most probable "
        "alternatives at each position (0: none). null: no log-probabilities.",
    )
    temperature: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False, description="0: greedy decoding. null: 1."
    )
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    n: int = Field(1, ge=1, description="Completions per prompt.")
    seed: int | None = Field(None, ge=0, lt=2**63, description="Same seed, same samples.")
    stop: str | list[str] | None = Field(
        None, description=f"Up to {MAX_STOP_STRINGS} strings that end a completion (not kept)."
    )
    stream: bool = Field(False, description="Server-sent events: one chunk per word.")
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="Accepted and ignored.")
    # OpenAI's fields that only their neutral value can mean here.
    suffix: str | None = Field(None, description="Only null or empty: no insertion.")
    presence_penalty: float | None = Field(None, description="Only 0 or null.")
    frequency_penalty: float | None = Field(None, description="Only 0 or null.")
    best_of: int | None = Field(None, description="Only null or n.")
    logit_bias: dict[str, float] | None = Field(None, description="Only null or empty.")
    # rnnlm's own.
    bos: bool = Field(
        True,
        description="rnnlm: each prompt starts a sentence, so its first word is predicted "
        "after SENTENCE_START and has a log-prob. false: the prompt is a fragment; its first "
        "word is context only and its log-prob null, as OpenAI's first token.",
    )
    scorer: Scorer | None = Field(
        None,
        description="rnnlm: what the log-probs come from: 'neural', 'ngram' or "
        "'interpolated'. null: as ScoreSentence (interpolated when the model has an n-gram "
        "part).",
    )


class Logprobs(BaseModel):
    tokens: list[str] = Field(
        description="The model's words (case-folded), SENTENCE_END last "
        "when the model ended the sentence."
    )
    token_logprobs: list[float | None] = Field(
        description="ln p of each token; null: no context (the first word of a fragment)."
    )
    top_logprobs: list[dict[str, float] | None] | None = Field(
        description="The most probable tokens at each position (logprobs > 0)."
    )
    text_offset: list[int] = Field(description="Where each token starts in `text`.")


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: Logprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str = Field(description="The model id and the version that answered.")
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rnnlm"
    version: int = Field(description="rnnlm: the version that serves now.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(Strict):
    prompt: str = Field(description="A text, tokenised as the model's training text was.")
    add_special_tokens: bool = Field(False, description="true: SENTENCE_START first.")
    model: str | None = Field(None, description="If given, the model of the path.")


class Tokens(BaseModel):
    tokens: list[int] = Field(description="Vocabulary indices; unknown words: UNKNOWN_TOKEN.")
    count: int
    max_model_len: int = Field(description="Words a prompt may have (--max-tokens-per-sentence).")


class DetokenizeRequest(Strict):
    tokens: list[int]
    model: str | None = None


class Detokenized(BaseModel):
    prompt: str


class TokenizerInfo(BaseModel):
    model: str
    version: int
    vocab_size: int
    bos_token: str
    eos_token: str
    unk_token: str
    lowercase: bool
    max_model_len: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["serving", "not_serving"]
