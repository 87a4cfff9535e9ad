"""schemathesis drives the gateway's OpenAPI with arbitrary input: never a 5xx, every answer as documented.

The schema is generated from the application itself (no server needed to collect the tests);
the calls go to the real gateway process of the shared reference stack.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from tradestack.refstack.config import GatewayConfig
from tradestack.refstack.gateway import create_app

from .helpers import schemathesis_all, schemathesis_clean

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(create_app(GatewayConfig(dsn="host=unused")).openapi())


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_answers_any_input_without_5xx_and_as_documented(case, gateway):
    response = case.call_and_validate(base_url=gateway, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])
    if 400 <= response.status_code < 500 and case.path.startswith("/v1/"):
        body = response.json()
        assert body.get("error") and (body.get("detail") or body.get("problems")), body


def test_schemathesis_with_every_check_and_the_stateful_phase_finds_nothing(gateway):
    """The published contract is exact: schema-valid input is accepted, invalid refused, every answer as
    documented, and the links from a created order reach its reads and its cancel."""
    code, output = schemathesis_all(f"{gateway}/openapi.json")
    assert schemathesis_clean(code, output), output
