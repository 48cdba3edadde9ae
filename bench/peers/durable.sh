#!/usr/bin/env bash
# The extra cost of durability, treadle's journal beside LangGraph's SQLite checkpointer, in one run:
#   bash bench/peers/durable.sh          # BENCH_N / BENCH_R / BENCH_M as in bench/bench_journal.py
# LangGraph gets a venv under $PEERBENCH (langgraph, langgraph-checkpoint-sqlite, aiosqlite); treadle runs
# in the project's .venv. Both on the same workload (K=10 calls of add, then an answer, a model that answers
# at once); results in results/durable_*.json and the table in results/durable.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PEERBENCH="${PEERBENCH:-${TMPDIR:-/tmp}/peerbench}"
PY="${PYTHON:-python3}"
RESULTS="${RESULTS:-$HERE/results}"
VENV="$PEERBENCH/venvs/langgraph_durable"
mkdir -p "$RESULTS" "$PEERBENCH/venvs"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q langgraph langchain-core langgraph-checkpoint-sqlite aiosqlite
fi
unset LANGSMITH_API_KEY LANGCHAIN_API_KEY LANGSMITH_TRACING LANGCHAIN_TRACING_V2 || true
echo "== treadle ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
"$REPO/.venv/bin/python" "$REPO/bench/bench_journal.py" --json "$RESULTS/durable_treadle.json"
echo "== langgraph ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
(cd "$HERE" && "$VENV/bin/python" bench_durable_langgraph.py --out "$RESULTS/durable_langgraph.json" > /dev/null)
"$PY" - "$RESULTS" <<'PYEOF'
import json, sys, os
r = sys.argv[1]
t = json.load(open(os.path.join(r, "durable_treadle.json")))
lg = json.load(open(os.path.join(r, "durable_langgraph.json")))
rows = ["| framework, store | extra per step, 1 run at a time | extra per step, amortised over 100 concurrent runs |",
        "|---|---|---|"]
rows.append(f"| treadle, SQLite WAL synchronous=NORMAL | {t['sqlite-normal']['sequential_us_per_step']:.0f} µs | "
            f"{t['sqlite-normal']['concurrent_us_per_step']:.0f} µs |")
rows.append(f"| treadle, SQLite WAL synchronous=FULL | {t['sqlite-full']['sequential_us_per_step']:.0f} µs | "
            f"{t['sqlite-full']['concurrent_us_per_step']:.0f} µs |")
s = lg["sequential_us_per_step"]
rows.append(f"| LangGraph SqliteSaver, WAL, synchronous=NORMAL | {s['sqlite-normal']:.0f} µs | – |")
rows.append(f"| LangGraph SqliteSaver / AsyncSqliteSaver, WAL, default (FULL) | {s['sqlite-default(FULL)']:.0f} µs | "
            f"{lg['concurrent_us_per_step']['async-sqlite-default']:.0f} µs |")
tn, tf = t["sqlite-normal"], t["sqlite-full"]
lc = lg["sequential_cpu_us_per_step"]
ratios = [f"NORMAL against NORMAL {s['sqlite-normal'] / tn['sequential_us_per_step']:.1f}x "
          f"(CPU {lc['sqlite-normal'] / tn['sequential_cpu_us_per_step']:.1f}x; LangGraph with durability=\"sync\" "
          f"{s['sqlite-normal-sync'] / tn['sequential_us_per_step']:.1f}x)",
          f"FULL against FULL {s['sqlite-default(FULL)'] / tf['sequential_us_per_step']:.1f}x "
          f"(CPU {lc['sqlite-default(FULL)'] / tf['sequential_cpu_us_per_step']:.1f}x)",
          f"100 concurrent runs {lg['concurrent_us_per_step']['async-sqlite-default'] / tf['concurrent_us_per_step']:.0f}x "
          "(LangGraph's async saver at FULL against treadle FULL)"]
text = "\n".join(rows) + "\n\nLangGraph's extra per step over treadle's, one run at a time: " + "; ".join(ratios) + \
    f".\n\nK={t['K']}, load at start {t['load']:.1f} (treadle) / {lg['load']:.1f} (LangGraph).\n"
open(os.path.join(r, "durable.md"), "w").write(text)
print(text)
PYEOF
