// An AG-UI front end's side of a treadle run, with @ag-ui/client's HttpAgent (docs/ag-ui.md shows this file).
// Usage: node agui_client.cjs http://127.0.0.1:8000 TOKEN   (prints one JSON line per run)
const { HttpAgent, buildResumeArray } = require("@ag-ui/client");

const [base, token] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${token}` };

function agent(name, extraHeaders = {}) {
  return new HttpAgent({ url: `${base}/agui/${name}`, headers: { ...headers, ...extraHeaders } });
}

async function run(a, params = {}, onEvent = () => {}) {
  const types = [];
  const { result, newMessages } = await a.runAgent(params, {
    onEvent: ({ event }) => { types.push(event.type); onEvent(event, a); },
  });
  return { result, types, messages: newMessages.map((m) => m.role), interrupts: a.pendingInterrupts };
}

async function main() {
  // 1. an agent with a tool: tool call start/args/end/result, then the answer
  const adder = agent("adder");
  adder.addMessage({ id: "u1", role: "user", content: "What is 17 + 25?" });
  console.log(JSON.stringify({ part: "tool", ...(await run(adder)) }));

  // 2. a call that needs approval: the run ends with an interrupt; the next run answers it
  const gate = agent("gate");
  gate.addMessage({ id: "u2", role: "user", content: "tidy up" });
  const asked = await run(gate);
  console.log(JSON.stringify({ part: "interrupt", ...asked }));
  const resume = buildResumeArray(gate.pendingInterrupts,
    Object.fromEntries(gate.pendingInterrupts.map((i) => [i.id, { status: "resolved", payload: { approved: true } }])));
  console.log(JSON.stringify({ part: "resumed", ...(await run(gate, { resume })) }));

  // 3. a reconnect: drop the connection mid-run, then post the same runId again: nothing is lost
  const runId = `reconnect-${Date.now()}`;
  const first = agent("pause");
  first.addMessage({ id: "u3", role: "user", content: "look k up" });
  const cut = await run(first, { runId }, (event, a) => { if (event.type === "TOOL_CALL_START") a.abortRun(); });
  const again = agent("pause");
  again.addMessage({ id: "u3", role: "user", content: "look k up" });
  console.log(JSON.stringify({ part: "reconnect", cut: cut.types, ...(await run(again, { runId })) }));
}

main().catch((e) => { console.error(e); process.exit(1); });
