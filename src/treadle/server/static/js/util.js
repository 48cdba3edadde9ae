/* treadle web console — Shared pieces: constants, DOM helpers, icons, formatting, small UI blocks. */

// ====================================================================== constants
const TOKEN_KEY = 'treadle.token';
const LIST_POLL_MS = 2000;
const RUN_POLL_MS = 3000;
const COLLAPSE_AT = 600;
const STATUS_LABELS = {
  running: 'running',
  waiting_for_approval: 'waiting for approval',
  success: 'success',
  error: 'error',
  max_steps: 'max steps',
  cancelled: 'cancelled',
};
const TERMINAL = new Set(['success', 'error', 'max_steps', 'cancelled']);

// ====================================================================== DOM helpers
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'testid') el.setAttribute('data-testid', v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'style') Object.assign(el.style, v);
      else if (k === 'value') el.value = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const kid of kids) {
    if (kid === null || kid === undefined || kid === false) continue;
    if (Array.isArray(kid)) append(el, kid);
    else if (kid instanceof Node) el.appendChild(kid);
    else el.appendChild(document.createTextNode(String(kid)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const ICONS = {
  check: ['M3.5 8.5l3 3 6-7'],
  x: ['M4 4l8 8M12 4l-8 8'],
  warn: ['M8 1.8 14.8 14H1.2L8 1.8Z', 'M8 6.2v3.6M8 11.7v.1'],
  tool: ['M10.5 2.5a3 3 0 0 0-3.7 3.9L2.5 10.7a1.4 1.4 0 0 0 2 2l4.3-4.3a3 3 0 0 0 3.9-3.7l-1.9 1.9-1.8-.4-.4-1.8 1.9-1.9Z'],
  brain: ['M8 2.5v11', 'M8 4a2.5 2.5 0 0 0-4.6-.6A2.5 2.5 0 0 0 2.6 8a2.5 2.5 0 0 0 1.6 4.2A2.4 2.4 0 0 0 8 13', 'M8 4a2.5 2.5 0 0 1 4.6-.6A2.5 2.5 0 0 1 13.4 8a2.5 2.5 0 0 1-1.6 4.2A2.4 2.4 0 0 1 8 13'],
  flag: ['M3.5 14V2.5', 'M3.5 3h8l-1.8 3 1.8 3h-8'],
  stop: ['M4.5 4.5h7v7h-7z'],
  user: ['M8 8a2.8 2.8 0 1 0 0-5.6A2.8 2.8 0 0 0 8 8Z', 'M2.8 14a5.2 5.2 0 0 1 10.4 0'],
  copy: ['M5.5 5.5h8v8h-8z', 'M10.5 5.5v-3h-8v8h3'],
  back: ['M10 3 5 8l5 5'],
  send: ['M2.5 8h10', 'M8.5 3.5 13 8l-4.5 4.5'],
  refresh: ['M13 8a5 5 0 1 1-1.5-3.6', 'M13 2.5v3h-3'],
  eye: ['M1.5 8S4 3.5 8 3.5 14.5 8 14.5 8 12 12.5 8 12.5 1.5 8 1.5 8Z', 'M8 10a2 2 0 1 0 0-4 2 2 0 0 0 0 4Z'],
};

function icon(name, cls) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
  for (const d of ICONS[name] || []) {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    svg.appendChild(p);
  }
  return svg;
}

// ====================================================================== formatting
function nowS() {
  return Date.now() / 1000;
}

function fmtInt(n) {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  return Math.round(n).toLocaleString('en-US');
}

function fmtCompact(n) {
  if (n === null || n === undefined || !isFinite(n)) return '—';
  if (n < 10000) return fmtInt(n);
  if (n < 1e6) return (n / 1000).toFixed(n < 1e5 ? 1 : 0) + 'k';
  return (n / 1e6).toFixed(1) + 'M';
}

function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s) || s < 0) return '—';
  if (s < 0.001) return '<1 ms';
  if (s < 1) return Math.round(s * 1000) + ' ms';
  if (s < 10) return s.toFixed(2) + ' s';
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtMs(ms) {
  if (!isFinite(ms)) return '—';
  if (ms < 1) return ms.toFixed(2) + ' ms';
  if (ms < 100) return ms.toFixed(1) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  return fmtDuration(ms / 1000);
}

function fmtElapsed(since) {
  const s = Math.max(0, Math.floor(nowS() - since));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function fmtAge(ts) {
  if (!ts) return '—';
  const s = Math.max(0, nowS() - ts);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function fmtDate(ts) {
  if (!ts) return '';
  try {
    return new Date(ts * 1000).toLocaleString();
  } catch (e) {
    return '';
  }
}

function shortId(id) {
  const s = String(id || '');
  return s.length > 12 ? s.slice(0, 8) : s;
}

function truncate(s, n) {
  const t = String(s === null || s === undefined ? '' : s);
  return t.length > n ? t.slice(0, n - 1) + '…' : t;
}

function oneLine(s) {
  return String(s === null || s === undefined ? '' : s).replace(/\s+/g, ' ').trim();
}

function pretty(v) {
  if (typeof v === 'string') return v;
  if (v === undefined) return '';
  try {
    const out = JSON.stringify(v, null, 2);
    return out === undefined ? String(v) : out;
  } catch (e) {
    return String(v);
  }
}

function tokensOf(usage) {
  if (!usage || typeof usage !== 'object') return null;
  return (Number(usage.input_tokens) || 0) + (Number(usage.output_tokens) || 0);
}

function usageTitle(usage) {
  if (!usage) return '';
  const parts = [`input ${fmtInt(usage.input_tokens || 0)}`, `output ${fmtInt(usage.output_tokens || 0)}`];
  if (usage.requests) parts.push(`${usage.requests} model call${usage.requests === 1 ? '' : 's'}`);
  if (usage.tool_calls) parts.push(`${usage.tool_calls} tool call${usage.tool_calls === 1 ? '' : 's'}`);
  if (usage.cost_usd) parts.push(`$${Number(usage.cost_usd).toFixed(4)}`);
  return parts.join(' · ');
}

function formatDetail(detail) {
  if (detail === null || detail === undefined) return '';
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      if (d && typeof d === 'object' && 'msg' in d) {
        const loc = (Array.isArray(d.loc) ? d.loc : []).filter((x) => x !== 'body').join('.');
        return loc ? `${loc}: ${d.msg}` : String(d.msg);
      }
      return typeof d === 'string' ? d : pretty(d);
    }).join('; ');
  }
  if (typeof detail === 'object' && typeof detail.message === 'string') return detail.message;
  return pretty(detail);
}

function isFinalFn(fn) {
  if (!fn || typeof fn !== 'object') return false;
  if (fn._is_answer_final === true) return true;
  return fn.name === 'finish' && !(Array.isArray(fn.args) && fn.args.length);
}

function finalAnswerOf(fn) {
  if (!fn) return null;
  if (fn._is_answer_final === true) return fn._answer;
  const kw = fn.kwargs || {};
  if ('answer' in kw) return kw.answer;
  const keys = Object.keys(kw);
  if (keys.length === 1) return kw[keys[0]];
  return keys.length ? kw : null;
}

function sameJson(a, b) {
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch (e) {
    return false;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// ====================================================================== small UI pieces
function statusBadge(status, opts) {
  const st = status || 'running';
  const el = h('span', {
    class: `badge status-${st}` + (opts && opts.live ? ' is-live' : ''),
    dataset: { status: st },
    title: opts && opts.title ? opts.title : null,
    testid: opts && opts.testid ? opts.testid : null,
  });
  updateBadge(el, st, opts && opts.live);
  return el;
}

function updateBadge(el, status, live) {
  const st = status || 'running';
  const label = STATUS_LABELS[st] || st.replace(/_/g, ' ');
  if (el.dataset.status === st && el.dataset.label === label && el.classList.contains('is-live') === !!live &&
      el.firstChild) return;
  el.className = `badge status-${st}` + (live ? ' is-live' : '');
  el.dataset.status = st;
  el.dataset.label = label;
  clear(el);
  el.appendChild(h('span', { class: 'badge-dot', 'aria-hidden': 'true' }));
  el.appendChild(document.createTextNode(label));
}

/** A <pre> holding a value; long values are cut at COLLAPSE_AT chars with a toggle. */
function valueBlock(value, cls) {
  const text = pretty(value);
  const pre = h('pre', { class: 'code' + (cls ? ' ' + cls : '') });
  if (text.length <= COLLAPSE_AT) {
    pre.textContent = text;
    return pre;
  }
  const wrap = h('div', { class: 'collapsible is-collapsed' });
  const btn = h('button', { type: 'button', class: 'link-btn collapse-toggle', testid: 'collapse-toggle', 'aria-expanded': 'false' });
  const short = text.slice(0, COLLAPSE_AT);
  const render = (open) => {
    pre.textContent = open ? text : short + '…';
    wrap.classList.toggle('is-collapsed', !open);
    btn.textContent = open ? 'Show less' : `Show all (${fmtInt(text.length)} characters)`;
    btn.setAttribute('aria-expanded', String(open));
  };
  btn.addEventListener('click', () => render(wrap.classList.contains('is-collapsed')));
  render(false);
  wrap.append(pre, btn);
  return wrap;
}

function answerBlock(answer) {
  if (typeof answer === 'string') return h('div', { class: 'answer-text' }, answer);
  if (answer === null || answer === undefined) return h('div', { class: 'answer-text muted' }, '(empty answer)');
  return valueBlock(answer, 'answer-json');
}

function formatActivity(data) {
  if (data === null || data === undefined) return '';
  if (typeof data === 'string') return data;
  if (typeof data === 'number' || typeof data === 'boolean') return String(data);
  if (typeof data === 'object' && !Array.isArray(data)) {
    const msg = data.message !== undefined ? data.message : (data.text !== undefined ? data.text : data.status);
    let prog = '';
    if (typeof data.progress === 'number') {
      if (typeof data.total === 'number' && data.total > 0) prog = `${data.progress}/${data.total}`;
      else if (data.progress >= 0 && data.progress <= 1) prog = `${Math.round(data.progress * 100)}%`;
      else prog = String(data.progress);
    } else if (data.progress !== undefined) {
      prog = String(data.progress);
    }
    if (msg !== undefined && msg !== null) return prog ? `${prog} · ${typeof msg === 'string' ? msg : pretty(msg)}` : (typeof msg === 'string' ? msg : pretty(msg));
    if (prog) return prog;
  }
  try {
    return JSON.stringify(data);
  } catch (e) {
    return String(data);
  }
}

function progressFraction(data) {
  if (!data || typeof data !== 'object' || typeof data.progress !== 'number') return null;
  if (typeof data.total === 'number' && data.total > 0) return Math.max(0, Math.min(1, data.progress / data.total));
  if (data.progress >= 0 && data.progress <= 1) return data.progress;
  return null;
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch (e) { /* fall through */ }
  const ta = h('textarea', { class: 'sr-only', 'aria-hidden': 'true' });
  ta.value = text;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch (e) {
    ok = false;
  }
  ta.remove();
  return ok;
}

function fmtTime(ts) {
  if (!ts) return '';
  try {
    return new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  } catch (e) {
    return '';
  }
}

export { LIST_POLL_MS, RUN_POLL_MS, STATUS_LABELS, TERMINAL, TOKEN_KEY, answerBlock, clear, copyText, finalAnswerOf, fmtAge, fmtCompact, fmtDate, fmtDuration, fmtElapsed, fmtInt, fmtMs, fmtTime, formatActivity, formatDetail, h, icon, isFinalFn, nowS, oneLine, pretty, progressFraction, sameJson, setText, shortId, sleep, statusBadge, tokensOf, truncate, updateBadge, usageTitle, valueBlock };
