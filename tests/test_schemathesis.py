"""Property-based API tests generated from ``/openapi.json`` (schemathesis): no 5xx, schema-conformant
responses, and no mutation accepted without the token."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from test_api import AUTH, TOKEN, make_stack  # noqa: E402

from vigil.serve.app import create_app  # noqa: E402
from vigil.serve.auth import MUTATING  # noqa: E402

monitor, manager = make_stack()
app = create_app(monitor, manager, manager.store, TOKEN)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
fast = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@fast
def test_no_server_error_with_the_token(case):
    """Every operation, valid and invalid inputs, with the token: 2xx/4xx only, as documented."""
    response = case.call(headers=AUTH)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    case.validate_response(response, excluded_checks=[schemathesis.checks.negative_data_rejection])


@schema.include(method="POST").parametrize()
@fast
def test_no_mutation_without_the_token(case):
    """Every mutating call, with no or a wrong token, is refused with 401 and changes nothing.

    (Schemathesis also tries other methods on these paths: those must be 405.)"""
    before = [(a.id, a.state) for a in manager.alarms(state="all")]
    trail = len(manager.audit())
    for headers in ({}, {"Authorization": "Bearer not-the-token-00000000"}):
        response = case.call(headers=headers)
        status = response.status_code
        where = f"{case.method} {case.formatted_path}: {status} {response.text}"
        # Refused before routing and body parsing; other methods on these paths are not allowed.
        assert status == (401 if case.method.upper() in MUTATING else 405), where
    assert [(a.id, a.state) for a in manager.alarms(state="all")] == before
    assert len(manager.audit()) == trail
