/* treadle web console — A run's trace as a waterfall (spans from GET runs/{id}/trace). */
import { clear, fmtInt, fmtMs, h, icon, nowS, pretty, truncate } from './util.js';

// ====================================================================== trace waterfall
const KINDS = ['run', 'step', 'model', 'tool', 'approval', 'guardrail', 'handoff'];

class TraceView {
  constructor(el, onRefresh) {
    this.el = el;
    this.onRefresh = onRefresh;
    this.data = null;
    this.open = new Set();
    this.renderMessage('Open this tab to load the trace.', false);
  }

  renderMessage(text, loading, isError) {
    clear(this.el).appendChild(h('div', { class: 'empty' + (isError ? ' is-error' : '') },
      loading ? h('span', { class: 'spinner' }) : null, text));
  }

  render(trace) {
    this.data = trace;
    const spans = Array.isArray(trace && trace.spans) ? trace.spans.filter((s) => s && s.id !== undefined) : [];
    clear(this.el);
    if (!spans.length) {
      this.el.appendChild(h('div', { class: 'empty' }, h('div', { class: 'empty-title' }, 'No spans yet'),
        h('div', { class: 'muted' }, 'The trace fills in as the run progresses.')));
      return;
    }
    const byId = new Map(spans.map((s) => [s.id, s]));
    const kids = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent !== null && s.parent !== undefined && byId.has(s.parent) && s.parent !== s.id) {
        if (!kids.has(s.parent)) kids.set(s.parent, []);
        kids.get(s.parent).push(s);
      } else {
        roots.push(s);
      }
    }
    const byStart = (a, b) => (a.start || 0) - (b.start || 0);
    roots.sort(byStart);
    for (const list of kids.values()) list.sort(byStart);
    const ordered = [];
    const seen = new Set();
    const walk = (s, depth) => {
      if (seen.has(s.id)) return;
      seen.add(s.id);
      ordered.push({ s, depth });
      for (const c of kids.get(s.id) || []) walk(c, depth + 1);
    };
    roots.forEach((r) => walk(r, 0));

    const now = nowS();
    let t0 = isFinite(trace.start) ? trace.start : Infinity;
    let t1 = isFinite(trace.end) ? trace.end : -Infinity;
    for (const s of spans) {
      if (isFinite(s.start)) t0 = Math.min(t0, s.start);
      const e = isFinite(s.end) ? s.end : (isFinite(s.start) ? Math.max(s.start, now) : -Infinity);
      t1 = Math.max(t1, e);
    }
    if (!isFinite(t0)) t0 = 0;
    if (!isFinite(t1) || t1 <= t0) t1 = t0 + 0.001;
    const total = t1 - t0;
    const labelCol = parseFloat(getComputedStyle(this.el).getPropertyValue('--wf-label')) || 280;
    const trackPx = Math.max(120, (this.el.clientWidth || 900) - labelCol - 60);
    const errors = spans.filter((s) => s.status === 'error').length;

    const kindsPresent = new Set(spans.map((s) => s.kind));
    const legend = h('div', { class: 'trace-legend' },
      KINDS.filter((k) => kindsPresent.has(k)).map((k) => h('span', { class: 'legend-item' }, h('span', { class: 'legend-swatch kind-' + k }), k)));
    const summary = h('div', { class: 'trace-summary' },
      h('span', {}, h('strong', {}, fmtInt(spans.length)), ' spans'),
      h('span', {}, 'total ', h('strong', {}, fmtMs(total * 1000))),
      errors ? h('span', { class: 'text-error' }, h('strong', {}, String(errors)), ` error${errors === 1 ? '' : 's'}`) : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'btn btn-sm btn-ghost', onclick: () => this.onRefresh() }, icon('refresh'), h('span', {}, 'Refresh')));

    const ticks = h('div', { class: 'wf-ticks' });
    [0, 0.25, 0.5, 0.75, 1].forEach((f) => {
      ticks.appendChild(h('span', { class: 'wf-tick' + (f === 0 ? ' is-first' : f === 1 ? ' is-last' : ''), style: { left: f * 100 + '%' } },
        f === 0 ? '0' : fmtMs(total * f * 1000)));
    });
    const wf = h('div', { class: 'wf', role: 'list' },
      h('div', { class: 'wf-row wf-axis', 'aria-hidden': 'true' }, h('div', { class: 'wf-label' }, 'Span'), h('div', { class: 'wf-track' }, ticks)));

    for (const { s, depth } of ordered) {
      const start = isFinite(s.start) ? s.start : t0;
      const open = !isFinite(s.end);
      const end = open ? Math.max(start, Math.min(now, t1)) : s.end;
      const left = Math.max(0, Math.min(1, (start - t0) / total));
      const width = Math.max(0, Math.min(1 - left, (end - start) / total));
      const durMs = (end - start) * 1000;
      const kind = KINDS.includes(s.kind) ? s.kind : 'other';
      const attrs = s.attributes && typeof s.attributes === 'object' ? s.attributes : {};
      const titleLines = [`${s.name}`, `kind: ${s.kind}`, `status: ${s.status || 'ok'}${open ? ' (open)' : ''}`,
        `start: +${fmtMs((start - t0) * 1000)}`, `duration: ${fmtMs(durMs)}`];
      for (const [k, v] of Object.entries(attrs)) titleLines.push(`${k}: ${truncate(typeof v === 'string' ? v : JSON.stringify(v), 200)}`);

      const bar = h('div', {
        class: `wf-bar kind-${kind}` + (s.status === 'error' ? ' is-error' : '') + (open ? ' is-open' : ''),
        style: { left: (left * 100).toFixed(3) + '%', width: `max(2px, ${(width * 100).toFixed(3)}%)` },
      });
      const durLabel = h('span', { class: 'wf-dur mono' }, fmtMs(durMs));
      const endPct = (left + width) * 100;
      const needPct = ((durLabel.textContent.length * 7 + 14) / trackPx) * 100;
      if (100 - endPct >= needPct) {
        durLabel.style.left = `calc(${endPct.toFixed(3)}% + 6px)`;
      } else if (left * 100 >= needPct) {
        durLabel.style.right = `calc(${(100 - left * 100).toFixed(3)}% + 6px)`;
      } else {
        durLabel.classList.add('is-inside');
        durLabel.style.right = `calc(${(100 - endPct).toFixed(3)}% + 6px)`;
      }
      const label = h('div', { class: 'wf-label', style: { paddingLeft: `calc(${depth} * var(--wf-indent) + 8px)` } },
        h('span', { class: `wf-kind kind-${kind}`, title: s.kind }),
        h('span', { class: 'wf-name' }, s.name || '(span)'),
        s.status === 'error' ? h('span', { class: 'wf-err', title: 'error' }, '!') : null);
      const detail = h('div', { class: 'wf-detail', hidden: !this.open.has(s.id) }, this.attrTable(s, start - t0, durMs, attrs));
      const row = h('div', {
        class: 'wf-row wf-span', role: 'listitem', testid: 'trace-row', tabindex: '0', title: titleLines.join('\n'),
        dataset: { spanId: String(s.id), kind: s.kind || '', depth: String(depth) }, 'aria-expanded': String(this.open.has(s.id)),
        onclick: () => toggle(), onkeydown: (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            toggle();
          }
        },
      }, label, h('div', { class: 'wf-track' }, bar, durLabel));
      const toggle = () => {
        const showing = detail.hidden;
        detail.hidden = !showing;
        row.setAttribute('aria-expanded', String(showing));
        if (showing) this.open.add(s.id);
        else this.open.delete(s.id);
      };
      wf.append(row, detail);
    }
    this.el.append(h('div', { class: 'trace-top' }, summary, legend), h('div', { class: 'wf-scroll' }, wf),
      h('p', { class: 'hint trace-hint' }, 'Click a span to see its attributes.'));
  }

  attrTable(s, offset, durMs, attrs) {
    const rows = [['kind', s.kind], ['status', s.status || 'ok'], ['start', '+' + fmtMs(offset * 1000)], ['duration', fmtMs(durMs)]];
    for (const [k, v] of Object.entries(attrs)) rows.push([k, typeof v === 'string' ? v : pretty(v)]);
    return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', { class: 'mono' }, k), h('dd', { class: 'mono' }, String(v))]));
  }
}

export { TraceView };
