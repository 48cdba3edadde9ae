"""Fixtures of the provider tests: a real llama.cpp server (xllamacpp) running SmolLM2-135M.

The server answers both the OpenAI and the Anthropic HTTP APIs, so the official SDKs talk
to it exactly as they talk to the hosted services. It is started once per session. CI
installs xllamacpp and the weights: when either is missing the fixture fails (it never
skips), so a broken environment cannot pass unnoticed.
"""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """The base address (``http://127.0.0.1:<port>``) of an in-process llama.cpp server."""
    try:
        import xllamacpp as xlc
    except ImportError as e:
        pytest.fail(f"the provider tests need xllamacpp ({e}); install it with: pip install 'treadle[local]'",
                    pytrace=False)
    from treadle.models._weights import INSTALL_HINT, smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.fail(f"the provider tests need the SmolLM2 weights; install them with: {INSTALL_HINT}", pytrace=False)

    params = xlc.CommonParams()
    params.model.path = path
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = 1  # errors only
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # a free port chosen by the server
    srv = xlc.Server(params)
    try:
        yield srv.listening_address
    finally:
        del srv  # the destructor stops the server's loop and joins its thread
