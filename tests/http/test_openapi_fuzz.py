"""schemathesis against the generated OpenAPI document (/openapi.json): requests built from
the document, valid ones and invalid ones, never get a 5xx, and every answer matches the
document (its status, content type and body schema). Bounded: a few dozen examples per
operation and mode, derandomised (a failure repeats), on a server with small generation
limits so that no example buys seconds of work.

(Cases are drawn with hypothesis directly: schemathesis' pytest loader does not work with
pytest 9.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from tests.http.conftest import MODEL

EXAMPLES = 25
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def server_settings() -> dict:
    return {"max_generated_tokens": 8, "max_generated_sentences": 3, "max_sentences_per_request": 6}


def operations(base_url: str) -> dict:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return {f"{op.method.upper()} {op.path}": op for op in found}


def test_the_document_lists_the_api(base_url):
    assert set(operations(base_url)) == {
        "GET /v1/models",
        "GET /v1/models/{model_id}",
        "POST /v1/completions",
        "POST /models/{model_id}/v1/completions",
        "GET /models/{model_id}/tokenizer_info",
        "POST /models/{model_id}/tokenize",
        "POST /models/{model_id}/detokenize",
        "GET /health",
    }


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_the_api_as_documented(base_url, mode):
    seen: dict[str, int] = {}
    for name, operation in operations(base_url).items():
        if mode is GenerationMode.NEGATIVE and not name.startswith("POST"):
            continue  # nothing to get wrong: no body, and any path string is a valid one
        # Valid requests to the model's own routes name the model: 404 alone tests little.
        per_model = name.startswith(("GET /models", "POST /models"))
        known = {"model_id": MODEL} if per_model and mode is GenerationMode.POSITIVE else None
        strategy = operation.as_strategy(mode, path_parameters=known)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            seen[case.path] = seen.get(case.path, 0) + 1
            case.call_and_validate(base_url=base_url, checks=CHECKS)

        run()
    assert len(seen) >= 4 and sum(seen.values()) >= 90, seen  # every operation, many times
