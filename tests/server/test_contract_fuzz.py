"""The API contract fuzzed from its own OpenAPI schema with schemathesis: no input gives a 500.

Every operation gets a bounded number of generated requests (``FUZZ_EXAMPLES``, default 12), so
the whole run stays well under a minute on two cores. The server runs with an API key, and the
fuzzer sends it: what is fuzzed is the handling of the bodies, not the key check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from server_support import KEY

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
from hypothesis import HealthCheck, given, settings  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def test_no_generated_request_gets_a_server_error(serve, kb_copy: Path) -> None:
    s = serve(kb_copy, api_key=KEY, readers=2)
    schema = schemathesis.openapi.from_url(s.base_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {KEY}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=s.base_url, headers=headers, timeout=60)
            if response.status_code == 500:  # 502-504 are deliberate: no LLM configured, LLM failed, timeout
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            else:
                assert "Traceback" not in response.text

        run()
    assert not failures, "\n".join(failures[:20])
    with s.client(KEY) as c:
        assert c.get("/api/health").status_code == 200  # still answering after all that
