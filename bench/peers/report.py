"""Turn results/*.json into results.md (run with any python3, no dependencies)."""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results")
ORDER = ["treadle", "openai-agents", "pydantic-ai", "langgraph", "adalflow"]


def f(st, fmt="{:.0f}", spread=True):
    if not st:
        return "n/a"
    m = fmt.format(st["median"])
    return f"{m} [{fmt.format(st['min'])}–{fmt.format(st['max'])}]" if spread else m


def main():
    runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(RES, "*.json")))]
    runs.sort(key=lambda d: ORDER.index(d["framework"]) if d["framework"] in ORDER else 99)
    if not runs:
        sys.exit("no results")
    p = runs[0]["params"]
    L = ["# Agent-framework overhead vs a hand-written loop", "",
         f"Workload: scripted model (no LLM), one tool `add(a, b)`; K={p['K']} tool steps + 1 final answer per run "
         f"(sequential/streaming), {p['M']} concurrent runs of K={p['K_CONC']} with {p['DELAY']*1e3:.0f} ms model "
         f"latency per turn (concurrency). Each figure is measured in one process per framework, interleaved with "
         f"the raw loop, over {p['R']} rounds (concurrency: {p['R_CONC']}); shown as median [min–max] across "
         "rounds. Overhead per step = (framework − raw) / K, per run.", ""]

    L += ["## Headline", "",
          "| framework | versions | overhead µs/step (async) | ×raw (async) | overhead µs/step (sync API) | ×raw (sync) "
          "| concurrency wall/ideal | RSS MB / 1000 concurrent runs | import ms (×bare python) "
          "| streaming: time-to-first-event µs (×raw) · events/run · extra µs/step vs non-streaming |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for d in runs:
        pa = d.get("primary_async")
        a = d.get("async", {}).get(pa, {})
        sync_name = next(iter(k for k in d.get("sync", {}) if not k.startswith("raw")), None)
        s = d.get("sync", {}).get(sync_name, {})
        conc = d.get("conc", {})
        c = conc.get(pa, {})
        st = next((v for k, v in d.get("async", {}).items() if "events_per_run" in v and not k.startswith("raw")), {})
        imp = d.get("import", {})
        vers = ", ".join(f"{k} {v}" for k, v in d["versions"].items() if v)
        L.append(f"| {d['framework']} | {vers} | {f(a.get('overhead_us_per_step'))} | {f(a.get('ratio_to_raw'))} "
                 f"| {f(s.get('overhead_us_per_step'))} | {f(s.get('ratio_to_raw'))} "
                 f"| {f(c.get('wall_over_ideal'), '{:.2f}')} | {f(c.get('rss_delta_mb_per_1000_runs'), '{:.0f}')} "
                 f"| {f(imp.get('import_ms'), spread=False)} (×{f(imp.get('ratio_to_bare_python'), spread=False)}) "
                 f"| {f(st.get('ttfe_us'), spread=False)} (×{f(st.get('ttfe_over_raw'), '{:.0f}', False)}) · "
                 f"{st.get('events_per_run', 'n/a')} · "
                 f"{f(st.get('stream_minus_nonstream_us_per_step'), spread=False)} |")
    L.append("")

    L += ["## Sequential runs, every variant", "",
          "`us/run` is absolute and depends on machine load; the ratio and the overhead are taken against the raw "
          "loop timed in the same round.", "",
          "| framework | variant | µs/run | ×raw | overhead µs/step |", "|---|---|---|---|---|"]
    for d in runs:
        for phase in ("sync", "async"):
            for name, v in d.get(phase, {}).items():
                L.append(f"| {d['framework']} | {name} | {f(v['us_per_run'], '{:.1f}' if name.startswith('raw') else '{:.0f}', False)} "
                         f"| {f(v['ratio_to_raw'], '{:.1f}')} | {f(v['overhead_us_per_step'], '{:.1f}' if name.startswith('raw') else '{:.0f}')} |")
    L.append("")

    L += ["## Concurrency", "",
          "Each measurement is a fresh child process: warm-up, then `asyncio.gather` of M runs. Ideal wall = "
          "(K+1) × latency. RSS delta = peak RSS during the gather (VmHWM, reset just before) − RSS before it.", "",
          "| framework | variant | wall s | wall/ideal | wall/raw | RSS delta MB per 1000 runs | ×raw RSS delta | RSS before MB |",
          "|---|---|---|---|---|---|---|---|"]
    for d in runs:
        for name, v in d.get("conc", {}).items():
            if not isinstance(v, dict):
                continue
            L.append(f"| {d['framework']} | {name} | {f(v['wall_s'], '{:.2f}')} | {f(v['wall_over_ideal'], '{:.2f}')} "
                     f"| {f(v['wall_over_raw'], '{:.2f}')} | {f(v['rss_delta_mb_per_1000_runs'], '{:.1f}')} "
                     f"| {f(v['rss_delta_over_raw'], '{:.1f}')} | {f(v['rss_before_mb'], '{:.0f}', False)} |")
    L.append("")

    L += [f"## Streaming (K={p['K']}, one model chunk per turn)", "",
          "Throughput: streaming runs with an instant model, compared with the framework's own non-streaming run. "
          f"Time-to-first-event (TTFE): separate pass where the model suspends once per turn "
          f"(asyncio.sleep({p.get('TTFE_DELAY')})), compared with the raw streaming loop under the same model.", "",
          "| framework | variant | events/run | time-to-first-event µs | TTFE ×raw | stream ×non-stream "
          "| extra µs/step vs non-stream |", "|---|---|---|---|---|---|---|"]
    for d in runs:
        for name, v in d.get("async", {}).items():
            if "events_per_run" in v:
                L.append(f"| {d['framework']} | {name} | {v['events_per_run']} | {f(v['ttfe_us'], '{:.1f}')} "
                         f"| {f(v['ttfe_over_raw'], '{:.1f}')} | {f(v.get('stream_over_nonstream'), '{:.2f}')} "
                         f"| {f(v.get('stream_minus_nonstream_us_per_step'))} |")
    L.append("")

    L += ["## Import time", "",
          "| framework | statement | wall ms over bare `python -c pass` | ×bare python | bare python ms | -X importtime ms |",
          "|---|---|---|---|---|---|"]
    for d in runs:
        i = d.get("import")
        if i:
            L.append(f"| {d['framework']} | `{i['stmt']}` | {f(i['import_ms'])} | {f(i['ratio_to_bare_python'], '{:.0f}')} "
                     f"| {f(i['bare_python_ms'], '{:.1f}', False)} | {f(i['x_importtime_ms'], '{:.0f}', False)} |")
    L.append("")

    L += ["## Notes per framework", ""]
    for d in runs:
        L.append(f"- **{d['framework']}** (python {d['python']}; load average at start/end "
                 f"{d['loadavg_start'][0]:.2f}/{d['loadavg_end'][0]:.2f}; {d['elapsed_s']:.0f} s):")
        for n in d.get("notes", []):
            L.append(f"  - {n}")
        if d.get("extra"):
            L.append(f"  - extra: {json.dumps(d['extra'])}")
    out = os.path.join(os.path.dirname(os.path.abspath(RES)), "results.md")
    open(out, "w").write("\n".join(L) + "\n")
    print(out)


if __name__ == "__main__":
    main()
