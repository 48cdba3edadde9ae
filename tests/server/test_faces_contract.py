"""The protocol faces keep their own OpenAPI documents (``treadle.server.faces.openapi``): schemathesis
generates requests from each (schema-valid and schema-violating ones) against a real server on
loopback; every response must be declared there — status, body schema (the protocol's error shape),
content type — and none may be a 5xx."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

try:
    import schemathesis
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the dev extra: the contract is not skipped there
    pytest.skip("schemathesis is in the dev extra (pip install -e '.[dev]')", allow_module_level=True)

from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from server_utils import serving

from treadle import Agent, Function
from treadle.models.scripted import ScriptedModel
from treadle.server.faces.openapi import agui_document, openai_document
from treadle.tools.builtin import calculator

TOKEN = "faces-t0k"
CONFIG = f"""
headers = {{ Authorization = "Bearer {TOKEN}" }}

[checks]
negative_data_rejection.expected-statuses = ["400", "401", "404", "409", "413", "415", "422", "429"]
# a schema-valid body may still be refused: the last message must be the user's, a previous response
# or an interrupt must exist (none of which a JSON Schema can say)
positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "409", "422"]

[generation]
max-examples = 25
"""
STATS: Counter[str] = Counter()


def _app() -> Any:
    from treadle.server import create_app

    adder = [Function(name="calculator", kwargs={"expression": "17 + 25"}), Function(name="finish",
                                                                                   kwargs={"answer": "42"})]
    tmp = Path(tempfile.mkdtemp(prefix="treadle-faces-"))
    atexit.register(shutil.rmtree, tmp, True)
    return create_app({"adder": Agent(name="adder", tools=[calculator], model=ScriptedModel(adder, per_run=True))},
                      store=f"sqlite:///{tmp / 'runs.db'}", token=TOKEN, max_live_runs=512)


APP = _app()
OPENAI = schemathesis.openapi.from_dict(openai_document(["adder"]), config=SchemathesisConfig.from_str(CONFIG))
AGUI = schemathesis.openapi.from_dict(agui_document(["adder"]), config=SchemathesisConfig.from_str(CONFIG))


@pytest.fixture(scope="module")
def faces_server() -> Iterator[str]:
    with serving(APP) as url:
        yield url


def _check(case: Any, url: str) -> None:
    response = case.call_and_validate(base_url=url, timeout=30)
    STATS[str(response.status_code)] += 1
    assert response.status_code < 500, response.text


@OPENAI.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)  # CI reproducible
def test_openai_face_keeps_its_document(case: Any, faces_server: str) -> None:
    _check(case, faces_server)


@AGUI.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)  # CI reproducible
def test_agui_face_keeps_its_document(case: Any, faces_server: str) -> None:
    _check(case, faces_server)


def test_the_contract_runs_reached_the_faces() -> None:
    if not STATS:
        pytest.skip("the generated contract tests did not run (deselected)")
    print(f"\nfaces contract: statuses {dict(sorted(STATS.items()))}")
    assert STATS["200"] and STATS["400"] and STATS["422"]


@pytest.mark.parametrize("path,document,schema", [
    ("/v1/chat/completions", openai_document, "Error"), ("/v1/responses", openai_document, "Error"),
    ("/agui", agui_document, "RunError"), ("/agui/adder", agui_document, "RunError")])
def test_the_guards_refusals_have_the_faces_error_shape(path: str, document: Any, schema: str,
                                                        faces_server: str) -> None:
    """401, 413, 415 and a foreign Host are answered before the face's code runs, by the server's
    guard: in the protocol's error shape all the same, as the document declares."""
    import httpx
    import jsonschema

    shape = document(["adder"])["components"]["schemas"][schema]
    url = faces_server + path
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for status, response in (
            (401, httpx.post(url, json={})),
            (415, httpx.post(url, content=b"x=1", headers={**auth, "Content-Type": "text/plain"})),
            (413, httpx.post(url, content=b"x" * (3 << 20), headers={**auth, "Content-Type": "application/json"})),
            (400, httpx.post(url, json={}, headers={**auth, "Host": "evil.example"})),
            (405, httpx.get(url, headers=auth))):
        assert response.status_code == status, (status, response.text)
        jsonschema.validate(response.json(), shape)
