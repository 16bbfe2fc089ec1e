"""Schemathesis fuzzes every operation of the OpenAPI spec over loopback HTTP: no 5xx, ever.

Valid (positive) and invalid (negative) requests per operation, a fixed number of derandomized
examples each and a per-request timeout, so the run is bounded. The operations are driven from one
test (schemathesis' own pytest plugin does not load under this pytest).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from helpers.cluster import FAST_MODEL
from helpers.servers import gateway, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 50


@pytest.fixture(scope="module")
def api_schema() -> Iterator[Any]:
    overrides = {"model": FAST_MODEL, "max_request_bytes": 1024 * 1024, "body_timeout_s": 2.0}
    with gateway(make_settings(**overrides)) as gw:
        yield schemathesis.openapi.from_url(gw.base_url + "/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_never_answers_5xx(api_schema: Any, mode: GenerationMode) -> None:
    """Generated requests to every endpoint of the spec: any status but a 5xx."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/hdr", "GET /v1/jobs/{job_id}", "GET /readyz"} <= labels, labels
    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call_and_validate(checks=[not_a_server_error], timeout=20)
            calls.append(response.status_code)

        try:
            check()
        except Unsatisfiable:  # no invalid variant exists for an operation without parameters
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert len(calls) >= len(operations), "schemathesis sent fewer requests than there are operations"
    assert all(code < 500 for code in calls)
    print(f"schemathesis {mode}: {len(calls)} requests, statuses {sorted(set(calls))}")
