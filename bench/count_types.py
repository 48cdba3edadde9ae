"""How typed a source tree is: ``Any`` and ``getattr(x, "…", None)`` probes per 1,000 lines.

    python bench/count_types.py                  # src/treadle of this checkout
    python bench/count_types.py PATH [PATH ...]  # other trees (another commit's src/treadle)
    python bench/count_types.py --json           # the figures as JSON

``Any`` counts every use of the name in code (``Any``, ``typing.Any``; not in comments or
strings); a probe is a call ``getattr(x, name, None)`` with three arguments, the third the
constant None. Lines are physical lines of the ``.py`` files (as ``wc -l`` counts them).
Issue #29's targets for ``src/treadle``: at most 35 ``Any`` and 3 probes per 1,000 lines.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from pathlib import Path

ANY_TARGET, PROBE_TARGET = 35.0, 3.0


def count_file(text: str) -> tuple[int, int, int]:
    """(lines, ``Any`` uses, ``getattr(…, None)`` probes) of one module's source."""
    lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    anys = sum(1 for t in tokenize.generate_tokens(io.StringIO(text).readline)
               if t.type == tokenize.NAME and t.string == "Any")
    probes = 0
    for node in ast.walk(ast.parse(text)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and len(node.args) == 3 and isinstance(node.args[2], ast.Constant) and node.args[2].value is None):
            probes += 1
    return lines, anys, probes


def count_tree(root: Path) -> dict[str, object]:
    lines = anys = probes = 0
    per_file: dict[str, tuple[int, int, int]] = {}
    for path in sorted(root.rglob("*.py")):
        got = count_file(path.read_text(encoding="utf-8"))
        per_file[str(path.relative_to(root))] = got
        lines, anys, probes = lines + got[0], anys + got[1], probes + got[2]
    k = lines / 1000 or 1.0
    return {"root": str(root), "files": len(per_file), "lines": lines, "any": anys, "probes": probes,
            "any_per_kloc": round(anys / k, 1), "probes_per_kloc": round(probes / k, 2),
            "top_any": sorted(((v[1], f) for f, v in per_file.items()), reverse=True)[:8],
            "top_probes": sorted(((v[2], f) for f, v in per_file.items() if v[2]), reverse=True)[:8]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("roots", nargs="*", type=Path, default=[Path(__file__).resolve().parent.parent / "src" / "treadle"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = [count_tree(r) for r in args.roots]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f"{r['root']}: {r['files']} files, {r['lines']} lines")
        print(f"  Any: {r['any']} ({r['any_per_kloc']} per 1,000 lines; target ≤ {ANY_TARGET:g})")
        print(f"  getattr(…, None): {r['probes']} ({r['probes_per_kloc']} per 1,000 lines; target ≤ {PROBE_TARGET:g})")
        print("  most Any:", ", ".join(f"{f} {n}" for n, f in r["top_any"]))  # type: ignore[union-attr]
        print("  most probes:", ", ".join(f"{f} {n}" for n, f in r["top_probes"]))  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    sys.exit(main())
