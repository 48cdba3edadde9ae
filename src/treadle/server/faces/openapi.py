"""OpenAPI documents of the protocol faces (not part of ``/openapi.json``, which describes
treadle's own API): the request bodies as the faces validate them, every status a face answers,
and each error with its protocol's shape. ``tests/server/test_faces_contract.py`` holds the
faces to them with schemathesis."""

from __future__ import annotations

from typing import Any

__all__ = ["agui_document", "openai_document"]

REF = "#/components/schemas/{model}"
GUARD = ("400", "401", "413", "415")  # the guard's answers (Host, token, size, content type), shaped by the face


def _schemas(*models: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(by_alias=True, ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _errors(schema: str, *codes: str) -> dict[str, Any]:
    return {code: {"description": "refused", "content": {"application/json": {"schema": {"$ref": f"#/components/"
                                                                                                   f"schemas/{schema}"}}}}
            for code in sorted({*GUARD, *codes})}


def _sse(json_schema: str | None = None) -> dict[str, Any]:
    # before OpenAPI 3.2 (no itemSchema) a stream's schema describes each of its events
    event = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"},
                            "retry": {"type": "integer"}}}
    content: dict[str, Any] = {"text/event-stream": {"schema": event}}
    if json_schema:
        content["application/json"] = {"schema": {"$ref": f"#/components/schemas/{json_schema}"}}
    return {"description": "the reply (JSON), or its stream (SSE)", "content": content}


def openai_document(agents: list[str]) -> dict[str, Any]:
    """The OpenAI-compatible face: ``/v1/models``, ``/v1/chat/completions``, ``/v1/responses``."""
    from .openai_compat import ChatRequest
    from .openai_responses import ResponsesRequest

    schemas = _schemas(ChatRequest, ResponsesRequest)
    for name in ("ChatRequest", "ResponsesRequest"):
        schemas[name]["properties"]["model"] = {"type": "string", "enum": agents}
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
    model = {"type": "object", "required": ["id", "object", "owned_by"],
             "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"}}}
    schemas["Model"] = model
    schemas["ModelList"] = {"type": "object", "required": ["object", "data"],
                            "properties": {"object": {"const": "list"},
                                           "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}}
    schemas["ChatCompletion"] = {"type": "object", "required": ["id", "object", "choices", "usage", "treadle"],
                                 "properties": {"object": {"const": "chat.completion"},
                                                "choices": {"type": "array", "minItems": 1, "maxItems": 1},
                                                "usage": {"type": "object", "required": ["prompt_tokens",
                                                                                         "completion_tokens",
                                                                                         "total_tokens"]}}}
    schemas["Response"] = {"type": "object", "required": ["id", "object", "status", "output", "treadle"],
                           "properties": {"object": {"const": "response"}, "output": {"type": "array"}}}

    def request(name: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    return {"openapi": "3.1.0", "info": {"title": "treadle: OpenAI-compatible face", "version": "1"},
            "paths": {
                "/v1/models": {"get": {"operationId": "list_models", "responses": {
                    "200": {"description": "the agents", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ModelList"}}}}, **_errors("Error")}}},
                "/v1/models/{model}": {"get": {"operationId": "get_model", "parameters": [
                    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "one agent", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Model"}}}}, **_errors("Error", "404")}}},
                "/v1/chat/completions": {"post": {"operationId": "chat_completions",
                                                  "requestBody": request("ChatRequest"),
                                                  "responses": {"200": _sse("ChatCompletion"),
                                                                **_errors("Error", "404", "409", "429")}}},
                "/v1/responses": {"post": {"operationId": "responses", "requestBody": request("ResponsesRequest"),
                                           "responses": {"200": _sse("Response"),
                                                         **_errors("Error", "404", "409", "429")}}}},
            "components": {"schemas": schemas}}


def agui_document(agents: list[str]) -> dict[str, Any]:
    """The AG-UI face: ``POST /agui`` and ``POST /agui/{agent}`` (RunAgentInput in, SSE out)."""
    from ag_ui.core import RunAgentInput

    schemas = _schemas(RunAgentInput)
    schemas["RunError"] = {"type": "object", "required": ["type", "message"],
                           "properties": {"type": {"const": "RUN_ERROR"}, "message": {"type": "string"},
                                          "code": {"type": "string"}}}
    run = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/RunAgentInput"}}}},
        "responses": {"200": _sse(), **_errors("RunError", "404", "409", "422", "429")}}
    return {"openapi": "3.1.0", "info": {"title": "treadle: AG-UI face", "version": "1"},
            "paths": {"/agui": {"post": {"operationId": "agui", **run}},
                      "/agui/{agent}": {"post": {"operationId": "agui_agent", "parameters": [
                          {"name": "agent", "in": "path", "required": True,
                           "schema": {"type": "string", "enum": agents}}], **run}}},
            "components": {"schemas": schemas}}
