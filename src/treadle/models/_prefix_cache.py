"""The evaluated prompt prefix (system prompt, tool schemas, examples), kept on disk.

Within a process llama.cpp's prompt cache already reuses the longest common prefix of
the previous request, so only the first request of a process pays for evaluating the
fixed part of the prompt (~850 tokens for the demo agent: seconds on 2 cores). This
saves the slot's KV state after that first request (llama.cpp's slot save) under a
key of the model file and the fixed messages, and restores it in a later process
before its first request (slot restore): llama.cpp then finds the prefix evaluated.

Best effort: any failure (no space, a file another process is writing, an old format)
only means the prefix is evaluated again. Only for a server with one slot.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
from typing import Any

__all__ = ["PrefixCache", "default_cache_dir"]

MAX_FILES = 12


def default_cache_dir() -> str | None:
    """``TREADLE_LOCAL_CACHE`` (empty or "off": no disk cache), else ~/.cache/treadle/llama-prefix."""
    env = os.environ.get("TREADLE_LOCAL_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else os.path.expanduser(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "treadle", "llama-prefix")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class PrefixCache:
    """Slot save/restore of one llama.cpp server (its private unix socket) to ``folder``."""

    def __init__(self, sock_path: str, folder: str, model_path: str) -> None:
        self.sock_path = sock_path
        self.folder = folder
        st = os.stat(model_path)
        self._model_id = f"{os.path.realpath(model_path)}:{st.st_size}:{int(st.st_mtime)}"
        self._seen: set[str] = set()  # keys restored or saved by this process
        self._lock = threading.Lock()
        self.restored = 0
        self.saved = 0

    def key(self, prefix: list[dict[str, Any]]) -> str:
        text = json.dumps([self._model_id, [(m.get("role"), m.get("content")) for m in prefix]], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:32]

    def _action(self, action: str, filename: str) -> bool:
        try:
            conn = _UnixHTTP(self.sock_path, timeout=30)
            try:
                conn.request("POST", f"/slots/0?action={action}", json.dumps({"filename": filename}),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                return resp.status == 200
            finally:
                conn.close()
        except OSError:
            return False

    def before(self, key: str) -> bool:
        """Before a request with this prefix: restore it when this process has not had it
        yet and a file holds it. Returns whether it was restored."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            if not os.path.isfile(os.path.join(self.folder, key + ".bin")):
                self._seen.discard(key)  # saved after the request
                return False
            ok = self._action("restore", key + ".bin")
            self.restored += ok
            return ok

    def after(self, key: str) -> None:
        """After a request with this prefix: save the slot when no file holds it yet."""
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            final = os.path.join(self.folder, key + ".bin")
            if os.path.isfile(final):
                return
            tmp = f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            if not self._action("save", tmp):
                return
            try:
                os.replace(os.path.join(self.folder, tmp), final)  # readers never see a half-written file
                self.saved += 1
            except OSError:
                return
            self._prune()

    def _prune(self) -> None:
        try:
            files = [os.path.join(self.folder, f) for f in os.listdir(self.folder) if f.endswith((".bin", ".tmp"))]
            files.sort(key=lambda f: os.path.getmtime(f), reverse=True)
            for f in files[MAX_FILES:]:
                os.remove(f)
        except OSError:
            pass
