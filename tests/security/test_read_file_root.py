"""The demo ``read_file`` tool never reads outside its root (the current directory).

Each hostile path goes through a journaled Runner (the JSON planner parsing the model's text
reply, the tool manager, the journal): the call is refused with a clear error observation,
the next call (a file inside the root) still works, and the marker of the secret files
outside the root appears nowhere: not in any event, not in what the model is sent, not in
the journal file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from helpers import run_face
from treadle import Agent, Runner, ScriptedModel
from treadle.store.records import event_json as _json
from treadle.tools.builtin import DEMO_TOOLS

MARKER = "TOPSECRET-7f3a"
INSIDE = "hello from inside the root"
REFUSED = re.compile(r"outside the current directory|no such file|NUL character|path is too long|not a valid path")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp/root is the tool's root (the cwd); secrets sit next to it and in a folder outside it."""
    (tmp_path / "secret.txt").write_text(f"{MARKER} next to the root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret2.txt").write_text(f"{MARKER} in a folder outside")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_text(INSIDE)
    os.symlink(tmp_path / "secret.txt", root / "link_abs")  # a symlink inside pointing outside
    os.symlink("../secret.txt", root / "link_rel")
    os.symlink(outside, root / "linked_dir")  # a symlinked directory
    os.symlink("../link_rel", root / "sub" / "chain")  # a chain of links ending outside
    os.symlink("loop", root / "loop")  # a link to itself
    monkeypatch.chdir(root)
    return root


def hostile_paths(tmp: Path) -> list[str]:
    secret = str(tmp / "secret.txt")
    return [
        "..", "../secret.txt", "../../secret.txt", "../" * 30 + "etc/passwd", "../../etc/passwd", "/etc/passwd",
        secret, "//" + secret.lstrip("/"), "/proc/self/root" + secret, "file://" + secret, "./../secret.txt",
        "sub/../../secret.txt", "ok.txt/../../secret.txt", "link_abs", "link_rel", "linked_dir/secret2.txt",
        "linked_dir/../secret.txt", "sub/chain", "loop", "ok.txt\x00../secret.txt", "\x00", "../secret.txt\x00",
        "a" * 5000, "sub/" * 2000 + "ok.txt", "~", "~/secret.txt", "~root/.bashrc", "..\\secret.txt",
        "..\\..\\secret.txt", "%2e%2e/secret.txt", "....//secret.txt", "\u2024\u2024/secret.txt",
        "\uff0e\uff0e/secret.txt", "../secret.txt\udcff", "\ud800", "", ".", "sub", "/",
    ]


@pytest.mark.parametrize("face", ["acall", "astream"])
async def test_hostile_paths_are_refused_and_nothing_outside_leaks(root: Path, tmp_path: Path, face: str) -> None:
    paths = hostile_paths(tmp_path)
    for i, path in enumerate(paths):
        call = json.dumps({"thought": "read it", "name": "read_file", "kwargs": {"path": path}})
        control = json.dumps({"name": "read_file", "kwargs": {"path": "ok.txt"}})
        model = ScriptedModel([call, control, json.dumps({"_is_answer_final": True, "_answer": "done"})])
        db = tmp_path / f"runs{i}.db"
        runner = Runner(Agent(tools=DEMO_TOOLS, model=model), store=f"sqlite:///{db}")
        res, events = await run_face(runner, face, "read the file")
        assert res.ok, (path, res.error)
        refused, control_step = res.step_history
        assert refused.status == "error", f"{path!r} was read: {refused.observation!r:.200}"
        assert REFUSED.search(refused.observation), (path, refused.observation)
        assert control_step.observation == INSIDE
        seen = [_json(e).decode("utf-8") for e in events]
        seen += [json.dumps(m, ensure_ascii=False) for r in model.requests for m in r.messages]
        assert not any(MARKER in s for s in seen), f"{path!r} leaked the secret"
        journal = b"".join(p.read_bytes() for p in tmp_path.glob(f"runs{i}.db*"))
        assert MARKER.encode() not in journal and INSIDE.encode() in journal


async def test_the_refusals_are_typed_retries(root: Path, tmp_path: Path) -> None:
    """Through the manager, as the loop calls it: ModelRetry (a clear refusal), never a crash."""
    from treadle.tools.manager import ToolManager
    from treadle.types import Function

    manager = ToolManager(DEMO_TOOLS)
    for path in hostile_paths(tmp_path):
        result = await manager.execute(Function(id="c", name="read_file", kwargs={"path": path}))
        assert result.error_type == "ModelRetry", (path, result.error_type, result.observation)
        assert MARKER not in str(result.observation) and len(result.observation) < 400
