"""`treadle batch`: many inputs, journaled, locally or on Ray."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, cast

from .. import Runner
from ..errors import TreadleError, UserError
from ..types import to_jsonable

if TYPE_CHECKING:
    from ..batch import Backend
from ._common import (
    ModelOpt,
    NoStoreOpt,
    StepsOpt,
    StoreOpt,
    ToolOpt,
    _fail,
    build_agent,
    open_journal,
    typer,
)


def batch_runner(model: str, tools: Optional[list[str]], max_steps: int) -> Runner[Any]:
    """Builds the runner of a batch in each worker (top-level, so it pickles for Ray)."""
    return Runner(build_agent(model, tools, max_steps))


def batch(inputs: Path = typer.Argument(..., help="A JSONL file: one question string or prompt_kwargs object "
                                        "per line."),
          out: Path = typer.Option(..., "--out", help="Where the RunnerResults go, one JSON per line."),
          backend: str = typer.Option("local", "--backend", help="local (asyncio) or ray."),
          concurrency: int = typer.Option(32, "--concurrency", help="Runs in flight at once."),
          workers: Optional[int] = typer.Option(None, "--workers", help="Ray workers (default: CPUs)."),
          model: str = ModelOpt, tool: Optional[list[str]] = ToolOpt, max_steps: int = StepsOpt,
          store: Optional[str] = StoreOpt, no_store: bool = NoStoreOpt,
          batch_id: Optional[str] = typer.Option(None, "--batch-id", help="Name the batch: running the same "
                                                 "id again continues an interrupted batch."),
          ray_address: Optional[str] = typer.Option(None, "--ray-address", help="An existing Ray cluster.")) -> None:
    """Run many inputs, journaled, with a progress bar; results in input order."""
    import functools

    from .._sync import run_sync
    from ..batch import abatch, rich_progress
    from ..store import default_store_path

    try:
        lines = [line for line in inputs.read_text().splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines]
    except (OSError, ValueError) as e:
        _fail(UserError(f"cannot read {inputs}: {e}"))
        return
    factory = functools.partial(batch_runner, model, tool, max_steps)
    journal: str | None = None  # a URL: Ray workers open the store again from it
    if not no_store:
        journal = store if store and "://" in store else f"sqlite:///{store or default_store_path()}"
        open_journal(journal).close()  # a bad URL or a missing extra ([postgres]) fails here, named
    try:
        with rich_progress(total=len(rows)) as progress:
            res = run_sync(abatch(factory, rows, backend=cast("Backend", backend),  # abatch checks the name
                                  concurrency=concurrency, workers=workers,
                                  store=journal, batch_id=batch_id, ray_address=ray_address, progress=progress))
    except TreadleError as e:
        _fail(e)
        return
    with out.open("w") as f:
        for r in res:
            f.write(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n")
    print(json.dumps(res.summary()))
    raise typer.Exit(0 if res.failed == 0 else 1)
