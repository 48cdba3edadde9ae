#!/usr/bin/env bash
# treadle beside OpenAI Agents SDK, PydanticAI, LangGraph and AdalFlow on one workload.
#   bash bench/peers/run_all.sh                 # every framework (peers get venvs under $PEERBENCH)
#   bash bench/peers/run_all.sh treadle         # a subset; the other results already in results/ stay
#   PB_N=50 PB_R=3 bash bench/peers/run_all.sh  # quicker, noisier (knobs: see workload.py)
# treadle runs in the project's venv (.venv, from the README's first command); results land in
# results/<name>.json and the table in results.md. Runs one after the other: timings share the CPUs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PEERBENCH="${PEERBENCH:-${TMPDIR:-/tmp}/peerbench}"
PY="${PYTHON:-python3}"
RESULTS="${RESULTS:-$HERE/results}"
mkdir -p "$PEERBENCH/venvs" "$RESULTS"

declare -A PIP=(
  [openai_agents]="openai-agents"
  [pydantic_ai]="pydantic-ai-slim"
  [langgraph]="langgraph langchain-core"
  [adalflow]="adalflow openai"
)
ORDER=(treadle openai_agents pydantic_ai langgraph adalflow)
[ $# -gt 0 ] && ORDER=("$@")

python_for() {
  local name="$1"
  if [ "$name" = treadle ]; then
    [ -x "$REPO/.venv/bin/python" ] || { echo "run the README's first command first (.venv)" >&2; exit 2; }
    echo "$REPO/.venv/bin/python"; return
  fi
  local venv="$PEERBENCH/venvs/$name"
  if [ ! -f "$venv/.installed" ]; then
    echo "== creating $venv" >&2
    "$PY" -m venv "$venv" >&2
    "$venv/bin/pip" install -q ${PIP[$name]} >&2
    touch "$venv/.installed"
  fi
  echo "$venv/bin/python"
}

# AdalFlow loads tiktoken's cl100k_base; take the file from the litellm wheel on PyPI (hash-checked by tiktoken)
TIK="$PEERBENCH/tiktoken_cache"
if [[ " ${ORDER[*]} " == *" adalflow "* ]] && [ ! -f "$TIK/9b5ad71b2ce5302211f9c61530b329a4922fc6a4" ]; then
  mkdir -p "$TIK" "$PEERBENCH/dl"
  "$PY" -m pip download -q --no-deps -d "$PEERBENCH/dl" litellm
  unzip -o -j -q "$PEERBENCH"/dl/litellm-*.whl \
    'litellm/litellm_core_utils/tokenizers/9b5ad71b2ce5302211f9c61530b329a4922fc6a4' -d "$TIK"
fi
export TIKTOKEN_CACHE_DIR="$TIK"
unset OPENAI_API_KEY LANGSMITH_API_KEY LANGCHAIN_API_KEY LANGSMITH_TRACING LANGCHAIN_TRACING_V2 || true

cd "$HERE"
for name in "${ORDER[@]}"; do
  py="$(python_for "$name")"
  echo "== $name ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$py" "bench_$name.py" --out "$RESULTS/$name.json" > /dev/null
done
"$PY" report.py "$RESULTS"
echo "table: $(dirname "$RESULTS")/results.md"
