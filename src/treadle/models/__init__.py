"""Model clients. Providers with heavy SDKs import lazily (``import treadle`` stays light)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .base import ModelClient, ModelDelta, ModelRequest, ModelResponse, StreamingModelClient
from .scripted import ScriptedModel

__all__ = ["ModelClient", "ModelDelta", "ModelRequest", "ModelResponse", "ScriptedModel",
           "StreamingModelClient", "resolve_model"]


def resolve_model(spec: Any) -> Any:
    """Turn a model string into a ModelClient (objects pass through)."""
    if not isinstance(spec, str):
        return spec
    raise UserError(f"unknown model string {spec!r}; pass a ModelClient such as ScriptedModel([...])")
