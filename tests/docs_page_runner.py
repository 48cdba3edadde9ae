"""Run one documentation page's Python blocks as a user pasting them into a Jupyter/IPython-like
session would: in order, in one ``__main__`` namespace, with the current directory importable.
A block with a top-level ``await``/``async for`` runs on one event loop kept for the page; any
other block is executed directly (no loop running). A block whose fence names a file
(```` ```python title="pkg/mod.py" ````) is that file's content: it is written there, not run.

Usage: ``python docs_page_runner.py BLOCKS.json`` (written by tests/test_docs_blocks.py: a list of
``{"index", "lineno", "code", "file", "skip"}``). Markers on stderr: ``DOCS-BLOCK-START <i>``
before each block, ``DOCS-BLOCK-FAILED <i>`` then the traceback on the first failure (exit 1).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import os
import sys
import time
import traceback
import types


def _watch_scripts() -> list[str]:
    """Runs end with an error result rather than raising: a ScriptedModel that ran out of replies
    (never what a page means to show) is recorded here and fails its block."""
    from treadle.errors import ScriptExhaustedError

    seen: list[str] = []
    init = ScriptExhaustedError.__init__

    def record(self: ScriptExhaustedError, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        seen.append(str(self))

    ScriptExhaustedError.__init__ = record  # type: ignore[method-assign]
    return seen


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        page = json.load(f)
    # an interactive session: the current directory first on sys.path, not this script's folder
    sys.path[0] = ""
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    namespace = module.__dict__
    exhausted = _watch_scripts()
    loop = asyncio.new_event_loop()
    started = time.monotonic()
    asyncio.set_event_loop(loop)
    try:
        for block in page["blocks"]:
            i = block["index"]
            print(f"DOCS-BLOCK-START {i} at {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
            if block["skip"]:
                print(f"skipped block {i}: {block['skip']}", flush=True)
                continue
            try:
                if block["file"]:
                    os.makedirs(os.path.dirname(block["file"]) or ".", exist_ok=True)
                    with open(block["file"], "w", encoding="utf-8") as out:
                        out.write(block["code"])
                    importlib.invalidate_caches()
                    continue
                # padded so that tracebacks give the line numbers of the page
                source = "\n" * block["lineno"] + block["code"]
                code = compile(source, page["path"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                               dont_inherit=True)
                if code.co_flags & inspect.CO_COROUTINE:
                    loop.run_until_complete(eval(code, namespace))
                else:
                    exec(code, namespace)
                if exhausted:
                    raise AssertionError(
                        f"a run of this block ended with {exhausted.pop()!r}: a ScriptedModel ran out of "
                        "replies (give the second run a fresh model, or per_run=True)")
            except BaseException as e:
                sys.stdout.flush()
                print(f"DOCS-BLOCK-FAILED {i}", file=sys.stderr, flush=True)
                tb = e.__traceback__
                while tb is not None and tb.tb_frame.f_code.co_filename != page["path"]:
                    tb = tb.tb_next  # from the page's first frame on (not this runner's, not asyncio's)
                traceback.print_exception(type(e), e, tb or e.__traceback__)
                return 1
            sys.stdout.flush()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
