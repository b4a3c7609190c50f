"""The API keeps its own OpenAPI document: schemathesis generates requests from it, valid and not.

Every operation is driven with generated path, query and body values (schemathesis's coverage and
fuzzing phases, FUZZ_EXAMPLES fuzzed cases each) through the real app on a fresh temporary
database, its launcher's thread off (a created run is only queued). Each answer must be: no 5xx;
a status the document declares; the declared content type, headers and body schema; a request
the document calls invalid refused; a request it calls valid accepted, except where a rule spans
fields (`candidates` >= `batch_size`, `baseline` among `runs`), which JSON Schema cannot state.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from marginscope.backend.main import create_app

pytest_plugins = ["api_fixtures"]

FUZZ_EXAMPLES = 25
# operations whose valid requests may still be refused by a rule between two fields, or by a
# grammar no JSON Schema states (GET /api/runs: `filter` and `order_by`, tested on their own in
# test_api_runs_search.py)
CROSS_FIELD_RULES = {"POST /api/runs", "GET /api/compare", "POST /api/ingest/runs", "GET /api/runs"}

schema = schemathesis.openapi.from_dict(create_app(supervise=False).openapi())


def send(client: TestClient, case: Any) -> Any:
    """The case through the in-process client (httpx spells a raw body `content`)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    return client.request(**kwargs)


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,  # the same cases on every run
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_answer_matches_the_openapi_document(case: Any, client: TestClient) -> None:
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance, negative_data_rejection,
              allow_header_conformance]
    if f"{case.method.upper()} {case.path}" not in CROSS_FIELD_RULES:
        checks.append(positive_data_acceptance)
    case.validate_response(send(client, case), checks=checks)
