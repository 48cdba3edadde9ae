/* treadle web console — Runs inside runs: a tool call that ran another agent (a child run)
   expands into that run's timeline, recursively; handoff and guardrail notes. */
import { clear, fmtTime, h, icon, pretty, shortId, statusBadge, truncate, valueBlock } from './util.js';
import { api, enc, errMsg } from './api.js';

const MAX_DEPTH = 16;

/** A "child run" toggle and the box its timeline opens in (under a tool call, or a guardrail note). */
class ChildRun {
  constructor(link, depth) {
    this.link = link; // {run_id, agent, status, …}
    this.depth = depth || 1;
    this.loaded = false;
    this.loading = null;
    this.chip = h('span', { class: 'chip chip-' + (link.status || 'running') }, link.status || 'running');
    this.toggleBtn = h('button', {
      type: 'button', class: 'btn btn-sm btn-ghost child-toggle', testid: 'child-toggle', 'aria-expanded': 'false',
      dataset: { runId: link.run_id }, onclick: () => this.toggle(),
    }, h('span', { class: 'child-caret' }, '▸'), h('span', {}, `${link.agent || 'agent'} run `),
    h('code', {}, shortId(link.run_id)), this.chip);
    this.box = h('div', { class: 'child-run', testid: 'child-run', hidden: true, dataset: { runId: link.run_id } });
    this.box.childRun = this;
    this.el = h('div', { class: 'child-link' }, this.toggleBtn, this.box);
  }

  setStatus(status) {
    if (!status || status === this.link.status) return;
    this.link.status = status;
    this.chip.className = 'chip chip-' + status;
    this.chip.textContent = status;
  }

  get open() {
    return !this.box.hidden;
  }

  async toggle() {
    const opening = this.box.hidden;
    this.box.hidden = !opening;
    this.toggleBtn.setAttribute('aria-expanded', String(opening));
    this.toggleBtn.firstChild.textContent = opening ? '▾' : '▸';
    if (opening && !this.loaded) await this.load();
  }

  /** (Re)load the child's detail and draw its timeline; an open one is refreshed as its events come. */
  async load() {
    if (this.loading) return this.loading;
    this.loading = (async () => {
      if (!this.loaded) clear(this.box).appendChild(h('div', { class: 'muted small' }, h('span', { class: 'spinner spinner-xs' }), ' Loading the child run…'));
      try {
        const { data } = await api('GET', 'runs/' + enc(this.link.run_id));
        this.loaded = true;
        this.setStatus(data.status);
        clear(this.box).append(...renderChild(data, this.depth));
      } catch (e) {
        clear(this.box).appendChild(h('div', { class: 'call-error' }, icon('x'), h('span', {}, errMsg(e, 'Could not load the child run'))));
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }
}

function callSig(fn) {
  if (!fn || typeof fn !== 'object') return '(no call)';
  const kwargs = fn.kwargs && typeof fn.kwargs === 'object' ? fn.kwargs : {};
  return `${fn.name || '?'}(${truncate(JSON.stringify(kwargs), 160)})`;
}

/** A child run's detail (GET /runs/{id}) as a compact timeline; its own children nest below their steps. */
function renderChild(run, depth) {
  const children = Array.isArray(run.children) ? run.children : [];
  const byCall = new Map(children.filter((c) => c.kind === 'tool' && c.call_id).map((c) => [c.call_id, c]));
  const head = h('div', { class: 'child-head' }, h('span', { class: 'label' }, run.agent || 'agent'), statusBadge(run.status),
    run.input ? h('span', { class: 'muted small child-input' }, truncate(String(run.input), 200)) : null,
    h('a', { class: 'small', href: '#/runs/' + enc(run.run_id) }, 'open'));
  const steps = h('ol', { class: 'child-steps' });
  const shown = new Set();
  for (const so of Array.isArray(run.step_history) ? run.step_history : []) {
    const fn = so.function || so.action;
    const index = Number.isInteger(so.step) ? so.step + 1 : steps.childElementCount + 1;
    const err = so.status === 'error';
    const li = h('li', { class: 'child-step' + (err ? ' is-error' : ''), testid: 'child-step', dataset: { step: String(index - 1) } },
      h('div', { class: 'child-step-line' }, h('span', { class: 'step-num' }, `Step ${index}`),
        h('code', { class: 'call-sig' }, callSig(fn)), h('span', { class: 'muted' }, '→'),
        h('span', { class: 'child-obs' + (err ? ' text-error' : '') }, truncate(typeof so.observation === 'string' ? so.observation : pretty(so.observation), 300))));
    const link = fn && fn.id ? byCall.get(fn.id) : null;
    if (link && depth < MAX_DEPTH) {
      shown.add(link.run_id);
      li.appendChild(new ChildRun(link, depth + 1).el);
    }
    steps.appendChild(li);
  }
  const rest = children.filter((c) => !shown.has(c.run_id) && depth < MAX_DEPTH).map((c) => h('div', { class: 'child-extra' },
    h('span', { class: 'muted small' }, c.kind === 'guardrail' ? 'guardrail agent' : 'running call'), new ChildRun(c, depth + 1).el));
  let outcome = null;
  if (run.status === 'success') outcome = h('div', { class: 'child-answer', testid: 'child-answer' }, h('div', { class: 'label' }, icon('flag'), ' Answer'), valueBlock(run.answer));
  else if (run.error) outcome = h('div', { class: 'call-error' }, icon('x'), h('span', {}, String(run.error)));
  if (!steps.childElementCount && !outcome) steps.appendChild(h('li', { class: 'muted small' }, 'No steps yet.'));
  return [head, steps, ...rest, outcome];
}

/** The child-run link of a finished agent call, from its tool output's metadata (or null). */
function childOfOutput(output) {
  const meta = output && typeof output === 'object' && !Array.isArray(output) ? output.metadata : null;
  return meta && typeof meta === 'object' && meta.child_run_id
    ? { run_id: meta.child_run_id, agent: meta.agent || null, status: meta.status || null, kind: 'tool' } : null;
}

/** Attach (or update) a call's child run. */
function attachChild(call, link) {
  if (!call || !link || !link.run_id) return;
  if (call.child && call.child.link.run_id === link.run_id) {
    call.child.setStatus(link.status);
    return;
  }
  if (call.child) return;
  call.child = new ChildRun(Object.assign({}, link), 1);
  call.el.classList.add('has-child');
  call.el.appendChild(call.child.el);
}

function handoffNote(d, ts) {
  return h('div', { class: 'note note-handoff', testid: 'handoff-note' }, h('span', { class: 'note-arrow' }, '→'),
    h('span', {}, 'handed to ', h('strong', {}, d.to_agent || '?'), d.from_agent ? ` (from ${d.from_agent})` : '',
      d.message ? `: ${d.message}` : ''), h('span', { class: 'note-time muted' }, fmtTime(ts)));
}

function guardrailNote(d, ts) {
  const tripped = !!d.tripped;
  return h('div', {
    class: 'note note-guardrail' + (tripped ? ' note-warn' : ''), testid: 'guardrail-note',
    dataset: { key: `guardrail:${d.kind}:${d.guardrail}:${d.step || 0}:${d.call_id || ''}` },
  }, icon(tripped ? 'warn' : 'check'),
  h('span', {}, 'guardrail ', h('strong', {}, d.guardrail || '?'), ` (${d.kind || '?'}${d.tool ? ' on ' + d.tool : ''}): `,
    tripped ? `tripped → ${d.action}` : 'passed', d.message ? ` — ${d.message}` : ''),
  h('span', { class: 'note-time muted' }, fmtTime(ts)));
}

// a context compaction: what was replaced by what, tokens before and after (the summary on hover)
function compactionNote(d, ts) {
  const replaced = (d.replaced || []).join('; ');
  return h('div', {
    class: 'note note-compaction', testid: 'compaction-note', title: d.summary ? `summary: ${d.summary}` : '',
  }, icon('warn'),
  h('span', {}, 'context compacted ', h('strong', {}, `${d.tokens_before} → ${d.tokens_after} tokens`),
    ` of ${d.window} (${d.reason || '?'})`, replaced ? `: ${replaced}` : ''),
  h('span', { class: 'note-time muted' }, fmtTime(ts)));
}

export { ChildRun, attachChild, childOfOutput, compactionNote, guardrailNote, handoffNote, renderChild };
