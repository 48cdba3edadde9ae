"""The web UI's native ES modules hang together: index.html loads the entry point as a module,
every name a module imports is exported by the module it names, no module imports the entry
point or forms a cycle, and the server sends them as JavaScript. (The Playwright tests in
test_ui_browser.py drive the UI itself.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parents[2] / "src" / "treadle" / "server" / "static"
JS = STATIC / "js"
IMPORT = re.compile(r"^import \{([^}]*)\} from '\./([\w-]+\.js)';$", re.M)
EXPORT = re.compile(r"^export \{([^}]*)\};$", re.M)


def _names(group: str) -> set[str]:
    return {n.strip() for n in group.split(",") if n.strip()}


def _modules() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(JS.glob("*.js"))}


def test_index_loads_the_entry_module() -> None:
    html = (STATIC / "index.html").read_text()
    assert '<script type="module" src="static/js/main.js"></script>' in html
    assert not (STATIC / "app.js").exists()


def test_imports_match_exports_and_the_graph_has_no_cycle() -> None:
    mods = _modules()
    assert {"main.js", "api.js", "util.js", "runs-list.js", "run-view.js", "timeline.js", "approvals.js",
            "trace.js", "sessions.js", "shell.js"} <= set(mods)
    exports = {name: set().union(*(_names(g) for g in EXPORT.findall(text))) for name, text in mods.items()}
    graph: dict[str, set[str]] = {}
    for name, text in mods.items():
        graph[name] = set()
        for group, target in IMPORT.findall(text):
            assert target in mods, (name, target)
            missing = _names(group) - exports[target]
            assert not missing, f"{name} imports {missing} that {target} does not export"
            graph[name].add(target)
        assert "main.js" not in graph[name]
        assert len(text.splitlines()) < 600, name
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    visit("main.js", ["main.js"])
    assert set(state) == set(mods), f"modules main.js never loads: {set(mods) - set(state)}"


def test_modules_are_served_as_javascript(agents: Any, store_url: str) -> None:
    from fastapi.testclient import TestClient

    from treadle.server import create_app

    with TestClient(create_app(agents, store=store_url, allowed_hosts=None)) as c:
        for name in _modules():
            r = c.get(f"/static/js/{name}")
            assert r.status_code == 200 and "javascript" in r.headers["content-type"], name
