/*
 * treadle web console.
 *
 * Plain ES2020, no dependencies and no build step. Hash routes:
 *   #/              runs list with a "New run" form
 *   #/runs/<id>     one run: header, live timeline (SSE), approvals, trace waterfall
 *
 * API calls use relative URLs (runs, info, ...) so the console also works behind a
 * path prefix. A bearer token, when needed, lives in sessionStorage and is only ever
 * sent in the Authorization header.
 */
'use strict';

(function () {
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

  // ====================================================================== error banner
  const banner = {
    el: null,
    text: null,
    init() {
      this.el = document.getElementById('error-banner');
      this.text = document.getElementById('error-banner-text');
      document.getElementById('error-banner-close').addEventListener('click', () => this.hide());
    },
    show(msg) {
      setText(this.text, msg);
      this.el.hidden = false;
    },
    hide() {
      this.el.hidden = true;
    },
  };

  // ====================================================================== auth
  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* private mode: ignore */ }
  }

  /** Take `token=...` out of the hash, store it, and rewrite the address bar without it. */
  function absorbTokenFromHash() {
    const hash = location.hash || '';
    const m = hash.match(/[#?&]token=([^&]*)/);
    if (!m) return false;
    let tok = m[1];
    try {
      tok = decodeURIComponent(tok);
    } catch (e) { /* keep raw */ }
    if (tok) setToken(tok);
    let rest = hash.replace(/([#?&])token=[^&]*&?/, '$1').replace(/[?&]+$/, '');
    if (rest === '#' || rest === '') rest = '#/';
    history.replaceState(history.state, '', location.pathname + location.search + rest);
    return true;
  }

  const tokenPrompt = {
    pending: null,
    ask(rejected) {
      if (this.pending) return this.pending.promise;
      const dlg = document.getElementById('token-dialog');
      const input = document.getElementById('token-input');
      const err = document.getElementById('token-error');
      const form = document.getElementById('token-form');
      let resolve;
      const promise = new Promise((r) => { resolve = r; });
      this.pending = { promise };
      err.hidden = !rejected;
      err.textContent = rejected ? 'The server did not accept that token. Try again.' : '';
      input.value = '';
      dlg.hidden = false;
      setTimeout(() => input.focus(), 0);
      const onSubmit = (e) => {
        e.preventDefault();
        const v = input.value.trim();
        if (!v) {
          input.focus();
          return;
        }
        setToken(v);
        form.removeEventListener('submit', onSubmit);
        dlg.hidden = true;
        this.pending = null;
        resolve();
      };
      form.addEventListener('submit', onSubmit);
      return promise;
    },
  };

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const tok = getToken();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    return headers;
  }

  // ====================================================================== API
  class ApiError extends Error {
    constructor(status, detail, message) {
      super(message);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(method, path, body, opts) {
    let rejectedOnce = false;
    for (;;) {
      const headers = authHeaders({ Accept: 'application/json' });
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      let res;
      try {
        res = await fetch(path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: 'no-store',
          credentials: 'same-origin',
          signal: opts && opts.signal,
        });
      } catch (e) {
        if (e && e.name === 'AbortError') throw e;
        throw new ApiError(0, null, 'Cannot reach the treadle server. Check that it is running.');
      }
      if (res.status === 401) {
        const hadToken = !!getToken();
        await tokenPrompt.ask(hadToken || rejectedOnce);
        rejectedOnce = true;
        continue;
      }
      const text = await res.text();
      let data = null;
      if (text) {
        try {
          data = JSON.parse(text);
        } catch (e) {
          data = text;
        }
      }
      if (!res.ok) {
        const detail = data && typeof data === 'object' && 'detail' in data ? data.detail : data;
        const msg = formatDetail(detail) || `${res.status} ${res.statusText || 'error'}`;
        throw new ApiError(res.status, detail, msg);
      }
      return { status: res.status, data };
    }
  }

  function errMsg(e, what) {
    if (!e) return what;
    if (e instanceof ApiError) {
      if (e.status === 0) return e.message;
      return `${what} (${e.status}): ${e.message}`;
    }
    return `${what}: ${e.message || e}`;
  }

  const enc = encodeURIComponent;

  // ====================================================================== SSE
  /**
   * Read an SSE body, calling onMessage({id, event, data}) for each dispatched message.
   * Comment lines (": ping") are ignored. Resolves when the server closes the stream.
   */
  async function readSSE(body, onMessage) {
    const reader = body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let data = [];
    let event = '';
    let id = null;
    const dispatch = () => {
      if (data.length) onMessage({ id, event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
    };
    const line = (ln) => {
      if (ln === '') return dispatch();
      if (ln[0] === ':') return undefined;
      const i = ln.indexOf(':');
      const field = i < 0 ? ln : ln.slice(0, i);
      let value = i < 0 ? '' : ln.slice(i + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id') id = value;
      return undefined;
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let start = 0;
        for (let i = 0; i < buf.length; i++) {
          const c = buf.charCodeAt(i);
          if (c !== 10 && c !== 13) continue;
          if (c === 13 && i + 1 === buf.length) break; // "\r" may be half of "\r\n": wait for more
          const ln = buf.slice(start, i);
          if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
          start = i + 1;
          line(ln);
        }
        buf = buf.slice(start);
      }
    } finally {
      try {
        reader.releaseLock();
      } catch (e) { /* ignore */ }
    }
  }

  // ====================================================================== app shell
  const app = {
    root: null,
    view: null,
    info: null,
    infoListeners: new Set(),
  };

  function parseRoute() {
    let path = (location.hash || '').replace(/^#/, '');
    const q = path.indexOf('?');
    if (q >= 0) path = path.slice(0, q);
    const m = path.match(/^\/?runs\/([^/]+)\/?$/);
    if (m) {
      let id = m[1];
      try {
        id = decodeURIComponent(id);
      } catch (e) { /* keep */ }
      return { name: 'run', id };
    }
    return { name: 'list' };
  }

  function navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function route() {
    absorbTokenFromHash();
    const r = parseRoute();
    if (app.view) app.view.destroy();
    app.view = null;
    banner.hide();
    clear(app.root);
    const nav = document.getElementById('nav-runs');
    nav.classList.toggle('is-active', r.name === 'list');
    if (r.name === 'list') nav.setAttribute('aria-current', 'page');
    else nav.removeAttribute('aria-current');
    app.view = r.name === 'run' ? new RunView(app.root, r.id) : new RunsView(app.root);
    window.scrollTo(0, 0);
  }

  async function loadInfo() {
    const box = document.getElementById('agent-info');
    try {
      const { data } = await api('GET', 'info');
      app.info = data || {};
      clear(box);
      const agents = Array.isArray(app.info.agents) ? app.info.agents : [];
      if (agents.length) {
        const a = agents[0];
        box.appendChild(h('span', { class: 'agent-chip', title: agents.map((x) => `${x.name} · ${x.model}`).join('\n') },
          h('span', { class: 'agent-chip-name' }, a.name),
          h('span', { class: 'agent-chip-sep', 'aria-hidden': 'true' }, '·'),
          h('span', { class: 'agent-chip-model mono' }, a.model),
          agents.length > 1 ? h('span', { class: 'agent-chip-more' }, `+${agents.length - 1}`) : null));
      }
      if (app.info.version) box.appendChild(h('span', { class: 'version mono', title: 'treadle version' }, 'v' + app.info.version));
      for (const fn of app.infoListeners) fn(app.info);
    } catch (e) {
      clear(box);
      box.appendChild(h('span', { class: 'version muted' }, 'server info unavailable'));
    }
  }

  // ====================================================================== runs list
  class RunsView {
    constructor(root) {
      this.root = root;
      this.rows = new Map();
      this.timer = null;
      this.inflight = false;
      this.destroyed = false;
      this.loaded = false;
      this.onVisible = () => {
        if (document.visibilityState === 'visible') this.refresh();
      };
      this.onInfo = () => this.renderAgentPicker();
      document.addEventListener('visibilitychange', this.onVisible);
      app.infoListeners.add(this.onInfo);
      document.title = 'Runs · treadle';
      this.build();
      this.renderAgentPicker();
      this.refresh();
    }

    destroy() {
      this.destroyed = true;
      clearTimeout(this.timer);
      document.removeEventListener('visibilitychange', this.onVisible);
      app.infoListeners.delete(this.onInfo);
    }

    build() {
      this.input = h('textarea', {
        id: 'new-run-input', testid: 'new-run-input', rows: 3, class: 'input textarea',
        placeholder: 'What should the agent do?', 'aria-label': 'Input for the new run',
        onkeydown: (e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            this.submit();
          }
        },
      });
      this.session = h('input', {
        id: 'new-run-session', testid: 'new-run-session', type: 'text', class: 'input',
        placeholder: 'optional — continue a chat session', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off',
      });
      this.agentSlot = h('div', { class: 'agent-slot' });
      this.submitBtn = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'new-run-submit' },
        icon('send'), h('span', {}, 'Start run'));
      const form = h('form', {
        class: 'card new-run', 'aria-labelledby': 'new-run-title', novalidate: true,
        onsubmit: (e) => {
          e.preventDefault();
          this.submit();
        },
      },
      h('div', { class: 'card-head' },
        h('h2', { id: 'new-run-title', class: 'card-title' }, 'New run'),
        h('span', { class: 'hint' }, h('kbd', {}, 'Ctrl'), '+', h('kbd', {}, 'Enter'), ' to start')),
      h('div', { class: 'card-body' },
        this.input,
        h('div', { class: 'new-run-row' },
          h('label', { class: 'field field-inline', for: 'new-run-session' },
            h('span', { class: 'field-label' }, 'Session id'), this.session),
          this.agentSlot,
          this.submitBtn)));

      this.count = h('span', { class: 'count-pill', hidden: true });
      this.pollState = h('span', { class: 'poll-state', 'aria-live': 'polite' });
      this.tbody = h('tbody');
      this.placeholderRow = h('tr', { class: 'placeholder-row' },
        h('td', { colspan: 7 }, h('div', { class: 'empty' }, h('span', { class: 'spinner' }), 'Loading runs…')));
      this.tbody.appendChild(this.placeholderRow);
      const th = (label, cls) => h('th', { scope: 'col', class: cls }, label);
      this.table = h('table', { class: 'runs-table', testid: 'runs-table' },
        h('thead', {}, h('tr', {},
          th('Status', 'c-status'), th('Input', 'c-input'), th('Model', 'c-model'), th('Steps', 'c-steps num'),
          th('Tokens', 'c-tokens num'), th('Age', 'c-age'), th('Session', 'c-session'))),
        this.tbody);
      const runs = h('section', { class: 'card runs-card', 'aria-labelledby': 'runs-title' },
        h('div', { class: 'card-head' },
          h('h2', { id: 'runs-title', class: 'card-title' }, 'Runs', this.count),
          this.pollState),
        h('div', { class: 'table-wrap' }, this.table));
      this.root.append(form, runs);
    }

    renderAgentPicker() {
      clear(this.agentSlot);
      this.agentSel = null;
      const agents = app.info && Array.isArray(app.info.agents) ? app.info.agents : [];
      if (agents.length < 2) return;
      this.agentSel = h('select', { class: 'input select', id: 'new-run-agent', testid: 'new-run-agent' },
        agents.map((a, i) => h('option', { value: a.name, selected: i === 0 }, `${a.name} (${a.model})`)));
      this.agentSlot.appendChild(h('label', { class: 'field field-inline', for: 'new-run-agent' },
        h('span', { class: 'field-label' }, 'Agent'), this.agentSel));
    }

    async submit() {
      if (this.submitBtn.disabled) return;
      const input = this.input.value;
      if (!input.trim()) {
        this.input.focus();
        this.input.classList.add('shake');
        setTimeout(() => this.input.classList.remove('shake'), 400);
        return;
      }
      const sid = this.session.value.trim();
      this.submitBtn.disabled = true;
      this.submitBtn.classList.add('is-busy');
      try {
        const { data } = await api('POST', 'runs', {
          input, session_id: sid || null, agent: this.agentSel ? this.agentSel.value : null,
        });
        if (!data || !data.run_id) throw new Error('the server returned no run id');
        banner.hide();
        navigate('#/runs/' + enc(data.run_id));
      } catch (e) {
        banner.show(errMsg(e, 'Could not start the run'));
      } finally {
        this.submitBtn.disabled = false;
        this.submitBtn.classList.remove('is-busy');
      }
    }

    async refresh() {
      clearTimeout(this.timer);
      if (this.destroyed || this.inflight) return;
      if (document.visibilityState === 'hidden') return; // resumed by visibilitychange
      this.inflight = true;
      try {
        const { data } = await api('GET', 'runs?limit=100');
        if (this.destroyed) return;
        this.render(Array.isArray(data && data.runs) ? data.runs : []);
        setText(this.pollState, '');
        this.pollState.className = 'poll-state';
      } catch (e) {
        if (this.destroyed) return;
        this.pollState.className = 'poll-state is-error';
        setText(this.pollState, e instanceof ApiError && e.status === 0 ? 'offline · retrying' : 'refresh failed · retrying');
        if (!this.loaded) this.showPlaceholder(errMsg(e, 'Could not load runs'), true);
      } finally {
        this.inflight = false;
        if (!this.destroyed) this.timer = setTimeout(() => this.refresh(), LIST_POLL_MS);
      }
    }

    showPlaceholder(text, isError) {
      clear(this.placeholderRow.firstChild);
      this.placeholderRow.firstChild.appendChild(h('div', { class: 'empty' + (isError ? ' is-error' : '') }, text));
      if (this.placeholderRow.parentNode !== this.tbody) this.tbody.appendChild(this.placeholderRow);
    }

    render(runs) {
      this.loaded = true;
      this.count.hidden = runs.length === 0;
      setText(this.count, String(runs.length));
      if (!runs.length) {
        for (const row of this.rows.values()) row.tr.remove();
        this.rows.clear();
        clear(this.placeholderRow.firstChild);
        this.placeholderRow.firstChild.appendChild(h('div', { class: 'empty', testid: 'runs-empty' },
          h('div', { class: 'empty-title' }, 'No runs yet'),
          h('div', { class: 'muted' }, 'Start one with the form above — it will show up here.')));
        if (this.placeholderRow.parentNode !== this.tbody) this.tbody.appendChild(this.placeholderRow);
        return;
      }
      this.placeholderRow.remove();
      const seen = new Set();
      let prev = null;
      for (const r of runs) {
        if (!r || !r.run_id || seen.has(r.run_id)) continue;
        seen.add(r.run_id);
        let row = this.rows.get(r.run_id);
        if (!row) {
          row = this.makeRow(r.run_id);
          this.rows.set(r.run_id, row);
        }
        this.updateRow(row, r);
        const expected = prev ? prev.nextSibling : this.tbody.firstChild;
        if (expected !== row.tr) this.tbody.insertBefore(row.tr, expected);
        prev = row.tr;
      }
      for (const [id, row] of this.rows) {
        if (!seen.has(id)) {
          row.tr.remove();
          this.rows.delete(id);
        }
      }
    }

    makeRow(id) {
      const href = '#/runs/' + enc(id);
      const row = {};
      row.badge = statusBadge('running');
      row.approval = h('span', { class: 'tag tag-warn', hidden: true }, 'needs approval');
      row.link = h('a', { href, class: 'run-link', tabindex: '-1' });
      row.sub = h('span', { class: 'run-sub mono' });
      row.model = h('td', { class: 'c-model mono', 'data-label': 'Model' });
      row.steps = h('td', { class: 'c-steps num', 'data-label': 'Steps' });
      row.tokens = h('td', { class: 'c-tokens num', 'data-label': 'Tokens' });
      row.age = h('td', { class: 'c-age' });
      row.session = h('td', { class: 'c-session', 'data-label': 'Session' });
      row.tr = h('tr', {
        class: 'run-row', testid: 'run-row', dataset: { runId: id }, tabindex: '0',
        onclick: (e) => {
          if (e.target.closest('a') || (window.getSelection && String(window.getSelection()).length)) return;
          navigate(href);
        },
        onkeydown: (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            navigate(href);
          }
        },
      },
      h('td', { class: 'c-status' }, row.badge, row.approval),
      h('td', { class: 'c-input' }, row.link, row.sub),
      row.model, row.steps, row.tokens, row.age, row.session);
      return row;
    }

    updateRow(row, r) {
      const status = r.status || 'running';
      updateBadge(row.badge, status, !!r.live);
      const pending = Array.isArray(r.pending_approvals) ? r.pending_approvals.length : 0;
      row.approval.hidden = !(pending && status !== 'waiting_for_approval');
      const text = oneLine(r.input);
      setText(row.link, text ? truncate(text, 160) : '(no input)');
      row.link.classList.toggle('muted', !text);
      if (text) row.link.title = truncate(r.input, 1000);
      let sub = shortId(r.run_id);
      if (r.agent) sub += ' · ' + r.agent;
      if (r.error && TERMINAL.has(status) && status !== 'success') sub += ' · ' + oneLine(r.error);
      setText(row.sub, truncate(sub, 140));
      setText(row.model, r.model || '—');
      const steps = Array.isArray(r.steps) ? r.steps.length : r.steps;
      setText(row.steps, steps === null || steps === undefined ? '—' : String(steps));
      const tok = tokensOf(r.usage);
      setText(row.tokens, tok === null ? '—' : fmtCompact(tok));
      row.tokens.title = usageTitle(r.usage);
      setText(row.age, fmtAge(r.created_at));
      row.age.title = fmtDate(r.created_at);
      if ((row.session.dataset.sid || '') !== (r.session_id || '')) {
        row.session.dataset.sid = r.session_id || '';
        clear(row.session);
        if (r.session_id) row.session.appendChild(h('span', { class: 'session-chip mono', title: r.session_id }, truncate(r.session_id, 18)));
        else row.session.appendChild(h('span', { class: 'muted' }, '—'));
      }
      row.session.classList.toggle('is-empty', !r.session_id);
    }
  }

  // ====================================================================== run page: pieces
  class ApprovalCard {
    constructor(view, req) {
      this.view = view;
      this.callId = req.call_id;
      this.toolName = req.tool_name || 'tool';
      this.kwargs = req.kwargs || {};
      this.state = 'pending';
      this.busy = false;

      this.pill = h('span', { class: 'decision-pill', hidden: true });
      this.errorEl = h('div', { class: 'inline-error', role: 'alert', hidden: true });
      this.approveBtn = h('button', { type: 'button', class: 'btn btn-success', testid: 'approve-btn', onclick: () => this.approve() },
        icon('check'), h('span', {}, 'Approve'));
      this.reason = h('input', {
        type: 'text', class: 'input input-sm', testid: 'deny-reason', placeholder: 'Reason (optional)',
        'aria-label': 'Reason for denying', autocomplete: 'off',
        onkeydown: (e) => {
          if (e.key === 'Enter') {
            e.preventDefault();
            this.deny();
          }
        },
      });
      this.denyBtn = h('button', { type: 'button', class: 'btn btn-danger', testid: 'deny-btn', onclick: () => this.deny() },
        icon('x'), h('span', {}, 'Deny'));
      this.editBtn = h('button', { type: 'button', class: 'btn', testid: 'edit-btn', 'aria-expanded': 'false', onclick: () => this.toggleEdit() },
        h('span', {}, 'Edit arguments'));
      this.editArea = h('textarea', {
        class: 'input textarea mono', testid: 'edit-args', rows: 6, spellcheck: 'false', 'aria-label': 'Edited arguments (JSON)',
      });
      this.editSave = h('button', { type: 'button', class: 'btn btn-primary', testid: 'edit-save', onclick: () => this.saveEdit() },
        'Save & run');
      this.editCancel = h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => this.toggleEdit(false) }, 'Cancel');
      this.editPanel = h('div', { class: 'edit-panel', hidden: true },
        h('label', { class: 'field' }, h('span', { class: 'field-label' }, 'Arguments (JSON object)'), this.editArea),
        h('div', { class: 'btn-row' }, this.editSave, this.editCancel));
      this.argsBox = h('div', { class: 'approval-args' }, this.argsView());
      const details = req.confirmation_details;
      this.el = h('section', {
        class: 'approval-card is-pending', testid: 'approval-card', dataset: { callId: this.callId, state: 'pending' },
        'aria-label': `Approval request for ${this.toolName}`,
      },
      h('header', { class: 'approval-head' },
        this.iconSlot = h('span', { class: 'approval-icon-slot' }, icon('warn', 'approval-icon')),
        this.title = h('span', { class: 'approval-title' }, 'Approval required'),
        this.pill),
      h('p', { class: 'approval-lead' }, 'The agent wants to run ', h('code', { class: 'tool-name' }, this.toolName), ' with these arguments:'),
      this.argsBox,
      details !== null && details !== undefined && details !== '' ?
        h('div', { class: 'approval-details' }, h('div', { class: 'label' }, 'Details'), valueBlock(details)) : null,
      req.thought ? h('p', { class: 'approval-thought' }, h('span', { class: 'label' }, 'Why: '), req.thought) : null,
      h('div', { class: 'approval-actions' },
        this.approveBtn,
        h('div', { class: 'deny-group' }, this.reason, this.denyBtn),
        this.editBtn),
      this.editPanel,
      this.errorEl);
    }

    argsView() {
      const keys = this.kwargs && typeof this.kwargs === 'object' ? Object.keys(this.kwargs) : [];
      if (!keys.length) return h('div', { class: 'muted small' }, '(no arguments)');
      return valueBlock(this.kwargs, 'json');
    }

    get decided() {
      return this.state !== 'pending';
    }

    controls() {
      return [this.approveBtn, this.denyBtn, this.editBtn, this.reason, this.editArea, this.editSave, this.editCancel];
    }

    setBusy(b) {
      this.busy = b;
      this.el.classList.toggle('is-busy', b);
      for (const c of this.controls()) c.disabled = b || this.decided;
    }

    showError(msg) {
      this.errorEl.hidden = !msg;
      setText(this.errorEl, msg || '');
    }

    toggleEdit(force) {
      const open = force === undefined ? this.editPanel.hidden : force;
      this.editPanel.hidden = !open;
      this.editBtn.setAttribute('aria-expanded', String(open));
      if (open) {
        if (!this.editArea.value) this.editArea.value = JSON.stringify(this.kwargs || {}, null, 2);
        this.editArea.focus();
      }
    }

    approve() {
      this.send('approve', {});
    }

    deny() {
      const r = this.reason.value.trim();
      this.send('deny', { reason: r || null });
    }

    saveEdit() {
      let kwargs;
      try {
        kwargs = JSON.parse(this.editArea.value);
      } catch (e) {
        this.showError(`The arguments are not valid JSON: ${e.message}`);
        return;
      }
      if (!kwargs || typeof kwargs !== 'object' || Array.isArray(kwargs)) {
        this.showError('The arguments must be a JSON object, e.g. {"x": 1}.');
        return;
      }
      this.send('edit', { kwargs });
    }

    async send(decision, extra) {
      if (this.busy || this.decided) return;
      this.showError('');
      this.setBusy(true);
      const ok = await this.view.postDecision(this, decision, extra);
      if (ok) {
        this.resolve(decision === 'deny' ? 'denied' : decision === 'edit' ? 'edited' : 'approved', extra.kwargs);
      }
      this.setBusy(false);
    }

    /** Mark decided. state: approved | edited | denied | expired. */
    resolve(state, kwargs) {
      if (this.decided && !(state === 'edited' && this.state === 'approved')) return;
      if (this.decided) this.el.classList.remove('is-' + this.state);
      this.state = state;
      const label = {
        approved: 'approved', edited: 'approved (edited)', denied: 'denied', expired: 'no longer pending',
      }[this.state] || this.state;
      clear(this.iconSlot).appendChild(icon('eye', 'approval-icon'));
      setText(this.title, `Approval for ${this.toolName}`);
      this.el.classList.remove('is-pending');
      this.el.classList.add('is-decided', 'is-' + this.state);
      this.el.dataset.state = this.state;
      this.pill.hidden = false;
      this.pill.className = 'decision-pill is-' + this.state;
      clear(this.pill);
      this.pill.append(icon(this.state === 'denied' || this.state === 'expired' ? 'x' : 'check'), h('span', {}, label));
      this.editPanel.hidden = true;
      if (kwargs && this.state === 'edited') {
        this.kwargs = kwargs;
        clear(this.argsBox).appendChild(this.argsView());
      }
      for (const c of this.controls()) c.disabled = true;
      this.view.updateApprovalAlert();
    }
  }

  class CallBlock {
    constructor(step, fn) {
      this.step = step;
      this.id = fn.id;
      this.name = fn.name || '?';
      this.kwargs = fn.kwargs || {};
      this.thought = null;
      this.state = 'planned';
      this.startTs = null;
      this.lastProgress = null;
      this.sig = h('code', { class: 'call-sig' });
      this.chip = h('span', { class: 'chip' });
      this.dur = h('span', { class: 'call-dur muted' });
      this.thoughtBox = h('div', { class: 'call-thought', hidden: true });
      this.argsBox = h('div', { class: 'call-args' });
      this.approvalSlot = h('div', { class: 'approval-slot' });
      this.progressBar = h('div', { class: 'progress', hidden: true }, h('div', { class: 'progress-fill' }));
      this.activity = h('ol', { class: 'activity', hidden: true });
      this.obsBox = h('div', { class: 'observation', hidden: true });
      this.errBox = h('div', { class: 'call-error', hidden: true });
      this.el = h('div', { class: 'call', dataset: { callId: this.id || '' } },
        h('div', { class: 'call-head' }, icon('tool', 'call-icon'), this.sig, h('span', { class: 'spacer' }), this.dur, this.chip),
        this.thoughtBox, this.argsBox, this.approvalSlot, this.progressBar, this.activity, this.obsBox, this.errBox);
      this.renderSig();
      this.setState('planned');
    }

    renderSig() {
      clear(this.sig);
      const keys = this.kwargs && typeof this.kwargs === 'object' && !Array.isArray(this.kwargs) ? Object.keys(this.kwargs) : [];
      this.sig.append(h('span', { class: 'fn' }, this.name), h('span', { class: 'paren' }, '('),
        h('span', { class: 'params' }, keys.join(', ')), h('span', { class: 'paren' }, ')'));
      clear(this.argsBox);
      if (keys.length) this.argsBox.appendChild(valueBlock(this.kwargs, 'json'));
      this.argsBox.hidden = !keys.length;
    }

    setThought(t) {
      this.thought = t;
      this.thoughtBox.hidden = !t;
      clear(this.thoughtBox);
      if (t) this.thoughtBox.append(icon('brain'), h('span', {}, t));
    }

    setKwargs(kwargs, edited) {
      if (kwargs && !sameJson(kwargs, this.kwargs)) {
        this.kwargs = kwargs;
        this.renderSig();
        if (edited) this.argsBox.prepend(h('div', { class: 'tag tag-info' }, 'arguments edited by reviewer'));
      }
    }

    setState(state, label) {
      this.state = state;
      const labels = {
        planned: 'queued', awaiting: 'needs approval', running: 'running', success: 'done', error: 'error',
        cancelled: 'cancelled', denied: 'denied', interrupted: 'interrupted',
      };
      this.chip.className = 'chip chip-' + state;
      clear(this.chip);
      if (state === 'running') this.chip.appendChild(h('span', { class: 'spinner spinner-xs' }));
      this.chip.appendChild(document.createTextNode(label || labels[state] || state));
      this.el.classList.toggle('is-error', state === 'error');
      this.el.classList.toggle('is-running', state === 'running');
      this.el.classList.toggle('is-awaiting', state === 'awaiting');
    }

    start(ts) {
      this.startTs = ts;
      this.setState('running');
    }

    addActivity(data, ts) {
      const text = formatActivity(data);
      const frac = progressFraction(data);
      if (frac !== null) {
        this.progressBar.hidden = false;
        this.progressBar.firstChild.style.width = (frac * 100).toFixed(1) + '%';
      }
      if (!text) return;
      this.activity.hidden = false;
      const rel = this.startTs && ts ? '+' + fmtDuration(Math.max(0, ts - this.startTs)) : '';
      this.activity.appendChild(h('li', {}, h('span', { class: 'activity-time mono' }, rel), h('span', { class: 'activity-text' }, text)));
    }

    complete(ts, error) {
      if (this.startTs && ts) setText(this.dur, fmtDuration(ts - this.startTs));
      if (this.state === 'running' || this.state === 'planned' || this.state === 'awaiting') {
        this.setState(error ? 'error' : 'success');
      }
      if (!this.progressBar.hidden) this.progressBar.firstChild.style.width = '100%';
      if (error) this.setError(error);
    }

    setError(err) {
      this.errBox.hidden = false;
      clear(this.errBox).append(icon('x'), h('span', {}, typeof err === 'string' ? err : pretty(err)));
    }

    setObservation(obs, status, denied) {
      this.obsBox.hidden = false;
      clear(this.obsBox);
      const empty = obs === null || obs === undefined || obs === '';
      this.obsBox.append(h('div', { class: 'label' }, 'Observation'),
        empty ? h('div', { class: 'muted small' }, '(no output)') : valueBlock(obs, status === 'error' ? 'is-error' : ''));
      if (status === 'error') {
        this.setState('error');
        const errText = this.errBox.textContent;
        if (errText && typeof obs === 'string' && obs.includes(errText)) this.errBox.hidden = true;
      } else if (status === 'cancelled') this.setState(denied ? 'denied' : 'cancelled');
      else if (status === 'success' && this.state !== 'error') this.setState('success');
    }

    interrupt() {
      if (this.state === 'running' || this.state === 'planned' || this.state === 'awaiting') this.setState('interrupted');
    }
  }

  class StepCard {
    constructor(index, startTs) {
      this.index = index;
      this.startTs = startTs;
      this.calls = [];
      this.tokens = null;
      this.thought = null;
      this.badge = h('span', { class: 'chip chip-running' }, 'running');
      this.meta = h('span', { class: 'step-meta muted' });
      this.thoughtBox = h('div', { class: 'thought', hidden: true });
      this.body = h('div', { class: 'step-body', hidden: true }, this.thoughtBox);
      this.notes = h('div', { class: 'step-notes' });
      this.el = h('article', { class: 'card step-card', testid: 'step-card', dataset: { step: String(index) } },
        h('header', { class: 'step-head' },
          h('span', { class: 'step-num' }, `Step ${index + 1}`),
          this.badge, h('span', { class: 'spacer' }), this.meta),
        this.body, this.notes);
      this.done = false;
      this.status = 'running';
    }

    setThought(t) {
      if (!t) return;
      this.thought = t;
      this.body.hidden = false;
      this.thoughtBox.hidden = false;
      clear(this.thoughtBox).append(h('div', { class: 'label' }, icon('brain'), 'Thought'), h('p', {}, t));
    }

    addCall(call) {
      this.calls.push(call);
      this.body.hidden = false;
      this.body.appendChild(call.el);
    }

    addTokens(usage) {
      const t = tokensOf(usage);
      if (t === null) return;
      this.tokens = (this.tokens || 0) + t;
      this.meta.title = usageTitle(usage);
      this.renderMeta();
    }

    renderMeta(endTs) {
      if (endTs) this.endTs = endTs;
      const parts = [];
      if (this.tokens !== null) parts.push(`${fmtInt(this.tokens)} tokens`);
      if (this.startTs && this.endTs) parts.push(fmtDuration(this.endTs - this.startTs));
      setText(this.meta, parts.join(' · '));
    }

    addError(title, text, raw) {
      this.notes.appendChild(h('div', { class: 'step-error' },
        h('div', { class: 'step-error-title' }, icon('x'), title),
        text ? h('div', { class: 'step-error-text' }, text) : null,
        raw ? h('div', { class: 'step-error-raw' }, h('div', { class: 'label' }, 'Raw reply'), valueBlock(raw)) : null));
    }

    setStatus(status) {
      this.status = status;
      const labels = { running: 'running', success: 'done', error: 'error', cancelled: 'cancelled', retry: 'retry', interrupted: 'interrupted', waiting: 'needs approval' };
      this.badge.className = 'chip chip-' + status;
      setText(this.badge, labels[status] || status);
      this.el.classList.toggle('is-error', status === 'error' || status === 'retry');
    }

    refreshStatus() {
      if (!this.calls.length) return;
      const st = this.calls.map((c) => c.state);
      if (st.includes('awaiting')) this.setStatus('waiting');
      else if (st.includes('running') || st.includes('planned')) this.setStatus('running');
      else if (st.includes('error')) this.setStatus('error');
      else if (st.includes('interrupted')) this.setStatus('interrupted');
      else if (st.every((s) => s === 'cancelled' || s === 'denied')) this.setStatus('cancelled');
      else this.setStatus('success');
    }
  }

  // ====================================================================== trace waterfall
  const KINDS = ['run', 'step', 'model', 'tool', 'approval'];

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

  // ====================================================================== run page
  class RunView {
    constructor(root, runId) {
      this.root = root;
      this.runId = runId;
      this.destroyed = false;
      this.abort = new AbortController();
      this.summary = null;
      this.lastSeq = -1;
      this.steps = new Map();
      this.calls = new Map();
      this.approvals = new Map();
      this.startedCalls = new Set();
      this.curStep = null;
      this.lastStepEndTs = null;
      this.finalStatus = null;
      this.finalResult = null;
      this.streamDone = false;
      this.streaming = false;
      this.modelPending = false;
      this.pendingSince = null;
      this.pendingFinal = null;
      this.evTokens = null;
      this.evUsage = null;
      this.evSteps = 0;
      this.sawEvents = false;
      this.endTs = null;
      this.cancelState = null;
      this.cancelNoted = false;
      this.cancelledShown = false;
      this.tab = 'timeline';
      this.traceTimer = null;
      this.summaryTimer = null;
      document.title = `Run ${shortId(runId)} · treadle`;
      this.build();
      this.ticker = setInterval(() => this.tick(), 1000);
      this.load();
    }

    destroy() {
      this.destroyed = true;
      this.abort.abort();
      clearInterval(this.ticker);
      clearTimeout(this.traceTimer);
      clearTimeout(this.summaryTimer);
    }

    // ------------------------------------------------------------------ layout
    build() {
      this.badge = statusBadge('running', { testid: 'run-status' });
      this.cancelBtn = h('button', { type: 'button', class: 'btn btn-danger-outline', testid: 'cancel-btn', hidden: true, onclick: () => this.cancel() },
        icon('stop'), h('span', {}, 'Cancel run'));
      this.copyBtn = h('button', {
        type: 'button', class: 'icon-btn copy-btn', title: 'Copy full run id', 'aria-label': 'Copy run id',
        onclick: async () => {
          const ok = await copyText(this.runId);
          this.copyBtn.classList.toggle('is-done', ok);
          setTimeout(() => this.copyBtn.classList.remove('is-done'), 1200);
        },
      }, icon('copy'));
      const stat = (label, cls) => {
        const v = h('dd', { class: 'stat-value' + (cls ? ' ' + cls : '') }, '—');
        return { el: h('div', { class: 'stat' }, h('dt', { class: 'stat-label' }, label), v), v };
      };
      this.stModel = stat('Model', 'mono');
      this.stSteps = stat('Steps');
      this.stTokens = stat('Tokens');
      this.stDuration = stat('Duration');
      this.stStarted = stat('Started');
      this.stSession = stat('Session', 'mono');
      this.stSession.el.hidden = true;
      this.stAgent = stat('Agent');
      this.stAgent.el.classList.add('stat-agent');
      this.stAgent.el.hidden = true;
      this.errorLine = h('div', { class: 'run-error-line', hidden: true });
      this.header = h('section', { class: 'card run-head' },
        h('div', { class: 'run-title-row' },
          h('h1', { class: 'run-title' }, h('span', { class: 'run-title-label' }, 'Run'),
            h('code', { class: 'run-id', title: this.runId }, shortId(this.runId)), this.copyBtn),
          this.badge,
          h('span', { class: 'spacer' }),
          this.cancelBtn),
        h('dl', { class: 'stats' }, this.stModel.el, this.stSteps.el, this.stTokens.el, this.stDuration.el, this.stStarted.el,
          this.stAgent.el, this.stSession.el),
        this.errorLine);

      this.approvalAlert = h('div', { class: 'approval-alert', role: 'status', hidden: true });

      this.tabTimeline = h('button', {
        type: 'button', role: 'tab', class: 'tab is-active', id: 'tab-timeline', 'aria-selected': 'true', 'aria-controls': 'panel-timeline',
        testid: 'timeline-tab', onclick: () => this.showTab('timeline'),
      }, 'Timeline');
      this.tabTrace = h('button', {
        type: 'button', role: 'tab', class: 'tab', id: 'tab-trace', 'aria-selected': 'false', 'aria-controls': 'panel-trace',
        testid: 'trace-tab', onclick: () => this.showTab('trace'),
      }, 'Trace');
      this.conn = h('span', { class: 'conn', 'aria-live': 'polite' });
      const tabs = h('div', { class: 'tabs' }, h('div', { class: 'tablist', role: 'tablist', 'aria-label': 'Run views' }, this.tabTimeline, this.tabTrace),
        h('span', { class: 'spacer' }), this.conn);

      this.thinkingLabel = h('span', { class: 'thinking-label' }, 'Model is thinking');
      this.thinkingTime = h('span', { class: 'thinking-time muted mono' });
      this.streamThinking = h('div', { class: 'stream-thinking', hidden: true });
      this.streamText = h('div', { class: 'stream-text', hidden: true });
      this.thinking = h('div', { class: 'thinking', testid: 'model-thinking', hidden: true, 'aria-live': 'polite' },
        h('div', { class: 'thinking-head' }, h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
          this.thinkingLabel, this.thinkingTime),
        this.streamThinking, this.streamText);
      this.timeline = h('section', { class: 'timeline', testid: 'timeline', id: 'panel-timeline', role: 'tabpanel', 'aria-labelledby': 'tab-timeline' },
        h('div', { class: 'empty timeline-loading' }, h('span', { class: 'spinner' }), 'Loading run…'),
        this.thinking);
      this.tracePanel = h('section', { class: 'card trace-view', testid: 'trace-view', id: 'panel-trace', role: 'tabpanel', 'aria-labelledby': 'tab-trace', hidden: true });
      this.trace = new TraceView(this.tracePanel, () => this.loadTrace(true));

      this.continueInput = h('textarea', {
        class: 'input textarea', rows: 2, testid: 'continue-input', placeholder: 'Send a follow-up message…', 'aria-label': 'Follow-up message',
        onkeydown: (e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            this.continueSession();
          }
        },
      });
      this.continueBtn = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'continue-submit' }, icon('send'), h('span', {}, 'Send'));
      this.continueSid = h('code', { class: 'session-chip' });
      this.continueBox = h('form', {
        class: 'card continue-box', hidden: true, novalidate: true, onsubmit: (e) => {
          e.preventDefault();
          this.continueSession();
        },
      },
      h('div', { class: 'card-head' }, h('h2', { class: 'card-title' }, 'Continue this session'), this.continueSid),
      h('div', { class: 'card-body continue-row' }, this.continueInput, this.continueBtn));

      this.root.append(
        h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/', class: 'back-link' }, icon('back'), 'All runs')),
        this.header, this.approvalAlert, tabs, this.timeline, this.tracePanel, this.continueBox);
    }

    showTab(name) {
      this.tab = name;
      const trace = name === 'trace';
      this.tabTimeline.classList.toggle('is-active', !trace);
      this.tabTrace.classList.toggle('is-active', trace);
      this.tabTimeline.setAttribute('aria-selected', String(!trace));
      this.tabTrace.setAttribute('aria-selected', String(trace));
      this.timeline.hidden = trace;
      this.tracePanel.hidden = !trace;
      if (trace) this.loadTrace(true);
      else clearTimeout(this.traceTimer);
    }

    // ------------------------------------------------------------------ loading
    async load() {
      let delay = 1000;
      while (!this.destroyed) {
        try {
          const { data } = await api('GET', 'runs/' + enc(this.runId), undefined, { signal: this.abort.signal });
          if (this.destroyed) return;
          this.summary = data || {};
          break;
        } catch (e) {
          if (this.destroyed || (e && e.name === 'AbortError')) return;
          if (e instanceof ApiError && e.status === 404) {
            this.notFound(e);
            return;
          }
          banner.show(errMsg(e, 'Could not load the run'));
          await sleep(delay, this.abort.signal);
          delay = Math.min(delay * 2, 10000);
        }
      }
      if (this.destroyed) return;
      const loading = this.timeline.querySelector('.timeline-loading');
      if (loading) loading.remove();
      this.renderInput();
      this.applySummary();
      if (this.summary.live) {
        this.modelPending = true;
        this.pendingSince = this.summary.created_at || nowS();
      }
      this.renderThinking();
      this.scheduleSummaryPoll();
      this.stream();
    }

    notFound(e) {
      banner.show(e instanceof ApiError && e.status === 404 ? `Run not found (404): ${e.message}` : errMsg(e, 'Could not load the run'));
      clear(this.root).append(
        h('nav', { class: 'crumbs' }, h('a', { href: '#/', class: 'back-link' }, icon('back'), 'All runs')),
        h('section', { class: 'card' }, h('div', { class: 'empty' },
          h('div', { class: 'empty-title' }, 'Run not found'),
          h('div', { class: 'muted' }, 'There is no run with id ', h('code', {}, this.runId), '. It may have been deleted, or the server restarted.'),
          h('a', { class: 'btn', href: '#/' }, 'Back to all runs'))));
    }

    renderInput() {
      const input = this.summary.input;
      if (input === null || input === undefined || input === '') return;
      this.appendTimeline(h('article', { class: 'card input-card' },
        h('div', { class: 'input-head' }, icon('user'), h('span', { class: 'label' }, 'Input'),
          this.summary.session_id ? h('span', { class: 'muted small' }, 'session ', h('code', {}, this.summary.session_id)) : null),
        h('div', { class: 'input-text' }, String(input))));
    }

    scheduleSummaryPoll() {
      clearTimeout(this.summaryTimer);
      if (this.destroyed) return;
      const watching = this.isLive() || this.status() === 'waiting_for_approval' || (this.summary && this.summary.live);
      if (!watching) return;
      this.summaryTimer = setTimeout(() => this.pollSummary(), RUN_POLL_MS);
    }

    async pollSummary() {
      if (this.destroyed) return;
      if (document.visibilityState !== 'hidden') {
        try {
          const { data } = await api('GET', 'runs/' + enc(this.runId), undefined, { signal: this.abort.signal });
          if (this.destroyed) return;
          this.summary = data || this.summary;
          this.applySummary();
          this.mergePendingFromSummary();
          // a run suspended for approval that was resumed: follow its stream again
          if (this.streamDone && this.finalStatus === 'waiting_for_approval' &&
              (this.summary.live || (this.summary.status && this.summary.status !== 'waiting_for_approval'))) {
            this.resumeStream();
          }
        } catch (e) {
          if (this.destroyed || (e && e.name === 'AbortError')) return;
        }
      }
      this.scheduleSummaryPoll();
    }

    mergePendingFromSummary() {
      const list = this.summary && Array.isArray(this.summary.pending_approvals) ? this.summary.pending_approvals : [];
      for (const pa of list) {
        if (!pa || !pa.call_id || this.approvals.has(pa.call_id) || this.startedCalls.has(pa.call_id)) continue;
        this.addApproval({ call_id: pa.call_id, tool_name: pa.tool_name, kwargs: pa.kwargs, thought: pa.thought }, null);
      }
    }

    resumeStream() {
      if (this.streaming) return;
      this.streamDone = false;
      this.finalStatus = null;
      this.stream();
    }

    // ------------------------------------------------------------------ state
    isLive() {
      if (this.finalStatus || this.streamDone) return false;
      return !!(this.summary && this.summary.live);
    }

    status() {
      if (this.finalStatus) return this.finalStatus;
      const s = this.summary && this.summary.status;
      if (this.isLive()) {
        // the stream is fresher than the last summary: a live run either waits on a person or runs
        if (this.hasPendingApproval()) return 'waiting_for_approval';
        if (this.sawEvents) return 'running';
        return s === 'waiting_for_approval' ? s : 'running';
      }
      return s || 'running';
    }

    applySummary() {
      const s = this.summary || {};
      if (s.model) setText(this.stModel.v, s.model);
      if (s.agent) {
        this.stAgent.el.hidden = false;
        setText(this.stAgent.v, s.agent);
      }
      if (s.session_id) {
        this.stSession.el.hidden = false;
        setText(this.stSession.v, s.session_id);
        this.stSession.v.title = s.session_id;
        this.continueBox.hidden = false;
        setText(this.continueSid, s.session_id);
        this.continueSid.title = 'session id';
      }
      setText(this.stStarted.v, fmtAge(s.created_at));
      this.stStarted.v.title = fmtDate(s.created_at);
      this.renderHeader();
    }

    renderHeader() {
      const s = this.summary || {};
      const status = this.status();
      const live = this.isLive();
      updateBadge(this.badge, status, live);
      const steps = this.sawEvents ? this.evSteps : (Array.isArray(s.steps) ? s.steps.length : s.steps);
      setText(this.stSteps.v, steps === null || steps === undefined ? '—' : fmtInt(steps));
      const usage = this.sawEvents && this.evUsage ? this.evUsage : s.usage;
      const tok = this.sawEvents && this.evTokens !== null && !this.evUsage ? this.evTokens : tokensOf(usage);
      setText(this.stTokens.v, tok === null ? '—' : fmtInt(tok));
      this.stTokens.v.title = usage ? usageTitle(usage) : '';
      let dur = null;
      if (live && s.created_at) dur = nowS() - s.created_at;
      else if (s.duration_s !== null && s.duration_s !== undefined && !live && TERMINAL.has(s.status)) dur = s.duration_s;
      else if (this.endTs && s.created_at) dur = this.endTs - s.created_at;
      else if (s.duration_s !== null && s.duration_s !== undefined) dur = s.duration_s;
      setText(this.stDuration.v, dur === null ? '—' : fmtDuration(dur));
      this.cancelBtn.hidden = !live || this.cancelState === 'done';
      const err = this.finalResult ? this.finalResult.error : (!live ? s.error : null);
      this.errorLine.hidden = true;
      if (err && status !== 'success' && status !== 'waiting_for_approval') {
        this.errorLine.hidden = false;
        clear(this.errorLine).append(icon('warn'), h('span', {}, oneLine(err)));
        this.errorLine.className = 'run-error-line status-' + status;
      }
      document.title = `Run ${shortId(this.runId)} · ${STATUS_LABELS[status] || status} · treadle`;
    }

    tick() {
      if (this.destroyed) return;
      if (this.isLive()) this.renderHeader();
      if (this.summary) setText(this.stStarted.v, fmtAge(this.summary.created_at));
      if (!this.thinking.hidden && this.pendingSince) {
        setText(this.thinkingTime, fmtElapsed(this.pendingSince));
      }
    }

    setConn(state) {
      const labels = { live: 'live', reconnecting: 'reconnecting…', ended: '', connecting: 'connecting…' };
      this.conn.className = 'conn conn-' + state;
      setText(this.conn, labels[state] || '');
    }

    // ------------------------------------------------------------------ SSE stream
    async stream() {
      if (this.streaming) return;
      this.streaming = true;
      let backoff = 500;
      try {
        while (!this.destroyed && !this.streamDone) {
          let gotEvents = false;
          try {
            this.setConn(this.lastSeq >= 0 ? 'reconnecting' : 'connecting');
            const headers = authHeaders({ Accept: 'text/event-stream' });
            if (this.lastSeq >= 0) headers['Last-Event-ID'] = String(this.lastSeq);
            const res = await fetch('runs/' + enc(this.runId) + '/events', {
              headers, cache: 'no-store', credentials: 'same-origin', signal: this.abort.signal,
            });
            if (res.status === 401) {
              await tokenPrompt.ask(!!getToken());
              continue;
            }
            if (res.status === 404) {
              banner.show(`The event stream of run ${shortId(this.runId)} was not found (404).`);
              break;
            }
            if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
            this.setConn(this.isLive() ? 'live' : 'ended');
            await readSSE(res.body, (msg) => {
              if (this.onMessage(msg)) gotEvents = true;
            });
          } catch (e) {
            if (this.destroyed || (e && e.name === 'AbortError')) return;
          }
          if (this.streamDone || this.destroyed) break;
          if (await this.runIsGone(gotEvents)) break;
          if (gotEvents) backoff = 500;
          this.setConn('reconnecting');
          await sleep(backoff, this.abort.signal);
          backoff = Math.min(backoff * 2, 10000);
        }
      } finally {
        this.streaming = false;
        if (!this.destroyed) this.setConn('ended');
      }
    }

    /**
     * The stream ended without execution_complete: should we stop following it?
     * Only when the run is no longer live and the last attempt brought nothing new
     * (the server replays everything after Last-Event-ID, so a drop near the end loses nothing).
     */
    async runIsGone(progressed) {
      try {
        const { data } = await api('GET', 'runs/' + enc(this.runId), undefined, { signal: this.abort.signal });
        if (this.destroyed || !data) return true;
        this.summary = data;
        this.applySummary();
        if (data.live || progressed) return false;
        this.streamDone = true;
        this.setModelPending(false);
        this.renderHeader();
        this.renderThinking();
        return true;
      } catch (e) {
        if (e && e.name === 'AbortError') return true;
        return e instanceof ApiError && e.status === 404;
      }
    }

    onMessage(msg) {
      let env;
      try {
        env = JSON.parse(msg.data);
      } catch (e) {
        return false; // not an envelope: ignore
      }
      if (!env || typeof env !== 'object') return false;
      let seq = Number.isInteger(env.seq) ? env.seq : parseInt(msg.id, 10);
      if (!Number.isFinite(seq)) seq = this.lastSeq + 1;
      if (seq <= this.lastSeq) return false; // replayed duplicate
      this.lastSeq = seq;
      const name = env.name || msg.event;
      const follow = this.nearBottom();
      try {
        this.handle(name, env.event || {}, Number(env.ts) || nowS());
      } catch (e) {
        // one malformed event must not stop the timeline
        if (window.console) console.warn('treadle: could not render event', name, e);
      }
      this.renderHeader();
      this.renderThinking();
      if (follow && this.isLive()) this.scrollToBottom();
      return true;
    }

    nearBottom() {
      const doc = document.documentElement;
      return doc.scrollHeight > window.innerHeight + 40 && window.innerHeight + window.scrollY >= doc.scrollHeight - 60;
    }

    scrollToBottom() {
      window.scrollTo(0, document.documentElement.scrollHeight);
    }

    appendTimeline(el) {
      this.timeline.insertBefore(el, this.thinking);
    }

    handle(name, ev, ts) {
      if (!this.sawEvents) {
        this.sawEvents = true;
        this.evTokens = 0;
      }
      if (this.finalStatus === 'waiting_for_approval' && name !== 'agent.execution_complete') {
        this.finalStatus = null; // resumed after a suspension
        this.finalResult = null;
        this.streamDone = false;
      }
      const item = ev.item || {};
      switch (name) {
        case 'raw': return this.onRaw(ev, ts);
        case 'agent.tool_call_start': return this.onToolStart(item, ts);
        case 'agent.tool_call_activity': return this.onActivity(item, ts);
        case 'agent.tool_permission_request': return this.onPermission(item, ts);
        case 'agent.tool_call_complete': return this.onToolComplete(item, ts);
        case 'agent.step_complete': return this.onStepComplete(item, ts);
        case 'runner.cancel_received': return this.onCancelReceived(item, ts);
        case 'runner.cancelled': return this.onCancelled(item, ts);
        case 'agent.execution_complete': return this.onComplete(item, ts);
        default: return undefined;
      }
    }

    ensureStep(index, ts) {
      const i = Number.isInteger(index) ? index : (this.curStep === null ? 0 : this.curStep);
      let card = this.steps.get(i);
      if (!card) {
        card = new StepCard(i, this.lastStepEndTs || (this.summary && this.summary.created_at) || ts);
        this.steps.set(i, card);
        this.appendTimeline(card.el);
      }
      if (this.curStep === null || i > this.curStep) this.curStep = i;
      return card;
    }

    ensureCall(fn, stepIndex, ts) {
      const f = fn && typeof fn === 'object' ? fn : {};
      const id = f.id || null;
      if (id && this.calls.has(id)) return this.calls.get(id);
      const step = this.ensureStep(stepIndex, ts);
      const call = new CallBlock(step, f);
      if (f.thought && f.thought !== step.thought) {
        if (!step.thought) step.setThought(f.thought);
        else call.setThought(f.thought);
      }
      step.addCall(call);
      if (id) this.calls.set(id, call);
      step.refreshStatus();
      return call;
    }

    setModelPending(on, ts) {
      this.modelPending = on;
      if (on) {
        this.pendingSince = ts || nowS();
      } else {
        this.pendingSince = null;
        clear(this.streamText);
        clear(this.streamThinking);
        this.streamText.hidden = true;
        this.streamThinking.hidden = true;
      }
    }

    renderThinking() {
      const show = this.modelPending && this.isLive() && !this.hasPendingApproval();
      this.thinking.hidden = !show;
      if (show) {
        const streamingText = !this.streamText.hidden;
        setText(this.thinkingLabel, streamingText ? 'Model is responding' : 'Model is thinking');
        if (this.pendingSince) setText(this.thinkingTime, fmtElapsed(this.pendingSince));
      }
    }

    hasPendingApproval() {
      for (const c of this.approvals.values()) if (!c.decided) return true;
      return false;
    }

    onRaw(ev, ts) {
      const data = ev.data;
      const step = Number.isInteger(ev.input) ? ev.input : this.curStep;
      if (Array.isArray(data)) {
        this.setModelPending(false);
        const tok = tokensOf(ev.usage);
        if (tok !== null) this.evTokens = (this.evTokens || 0) + tok;
        if (ev.model_name && !(this.summary && this.summary.model)) setText(this.stModel.v, ev.model_name);
        const tools = data.filter((f) => !isFinalFn(f));
        const finals = data.filter(isFinalFn);
        if (finals.length) this.pendingFinal = { step, fn: finals[0] };
        if (tools.length || ev.error) {
          const card = this.ensureStep(step, ts);
          card.addTokens(ev.usage);
          for (const fn of tools) this.ensureCall(fn, step, ts);
          if (ev.error) card.addError('The model reply had a problem', String(ev.error), ev.text || null);
        } else {
          this.pendingTokens = { step, usage: ev.usage };
        }
        return;
      }
      if (data && typeof data === 'object') { // streamed delta
        if (!this.modelPending) this.setModelPending(true, ts);
        if (typeof data.thinking === 'string' && data.thinking) {
          this.streamThinking.hidden = false;
          this.streamThinking.appendChild(document.createTextNode(data.thinking));
        }
        if (typeof data.text === 'string' && data.text) {
          this.streamText.hidden = false;
          this.streamText.appendChild(document.createTextNode(data.text));
        }
        if (typeof data.tool_name === 'string' && data.tool_name) {
          this.streamText.hidden = false;
          this.streamText.appendChild(h('span', { class: 'stream-tool mono' }, `→ ${data.tool_name}(`));
        }
        if (typeof data.arguments_delta === 'string' && data.arguments_delta) {
          this.streamText.hidden = false;
          this.streamText.appendChild(h('span', { class: 'stream-args mono' }, data.arguments_delta));
        }
        return;
      }
      if (ev.error) { // the call failed or could not be parsed
        this.setModelPending(false);
        const card = this.ensureStep(step, ts);
        card.addTokens(ev.usage);
        card.addError('The model reply could not be used', String(ev.error), ev.text || null);
      }
    }

    onToolStart(item, ts) {
      const fn = item.data || {};
      const id = fn.id || item.id;
      this.startedCalls.add(id);
      const call = this.ensureCall(Object.assign({}, fn, { id }), this.curStep, ts);
      const card = this.approvals.get(id);
      const edited = !!card && fn.kwargs !== undefined && !sameJson(fn.kwargs || {}, call.kwargs || {});
      call.setKwargs(fn.kwargs, edited);
      call.start(ts);
      if (card && (!card.decided || edited)) card.resolve(edited ? 'edited' : 'approved', fn.kwargs);
      call.step.refreshStatus();
    }

    onActivity(item, ts) {
      let call = item.id ? this.calls.get(item.id) : null;
      if (!call) {
        for (const c of this.calls.values()) if (c.state === 'running') call = c;
      }
      if (call) call.addActivity(item.data, ts);
    }

    onPermission(item, ts) {
      const d = item.data || {};
      const fn = d.tool || {};
      const id = d.id || fn.id || item.id;
      const call = this.ensureCall(Object.assign({}, fn, { id, name: fn.name || d.tool_name }), this.curStep, ts);
      if (call.state === 'planned') call.setState('awaiting');
      call.step.refreshStatus();
      this.addApproval({
        call_id: id, tool_name: d.tool_name || fn.name, kwargs: fn.kwargs || {}, thought: null,
        confirmation_details: d.confirmation_details,
      }, call);
    }

    addApproval(req, call) {
      if (this.approvals.has(req.call_id)) return this.approvals.get(req.call_id);
      const card = new ApprovalCard(this, req);
      this.approvals.set(req.call_id, card);
      const target = call || this.calls.get(req.call_id);
      if (target) target.approvalSlot.appendChild(card.el);
      else this.appendTimeline(card.el);
      this.updateApprovalAlert();
      return card;
    }

    updateApprovalAlert() {
      const pending = [...this.approvals.values()].filter((c) => !c.decided);
      this.approvalAlert.hidden = !pending.length;
      if (pending.length) {
        clear(this.approvalAlert).append(
          icon('warn'),
          h('span', { class: 'approval-alert-text' },
            pending.length === 1 ? h('span', {}, h('code', {}, pending[0].toolName), ' is waiting for your approval')
              : `${pending.length} tool calls are waiting for your approval`),
          h('button', {
            type: 'button', class: 'btn btn-sm btn-warn', onclick: () => {
              if (this.tab !== 'timeline') this.showTab('timeline');
              pending[0].el.scrollIntoView({ behavior: 'smooth', block: 'center' });
              setTimeout(() => pending[0].approveBtn.focus({ preventScroll: true }), 300);
            },
          }, 'Review'));
      }
      this.renderThinking();
      this.renderHeader();
    }

    onToolComplete(item, ts) {
      const d = item.data || {};
      const input = d.input || {};
      const id = item.id || input.id;
      const call = this.ensureCall(Object.assign({ name: d.name }, input, { id }), this.curStep, ts);
      const card = this.approvals.get(id);
      const denied = card && !this.startedCalls.has(id);
      if (card && !card.decided) card.resolve(denied ? 'denied' : 'approved');
      const out = d.output;
      const outStatus = out && typeof out === 'object' && !Array.isArray(out) ? out.status : null;
      if (denied || (card && card.state === 'denied')) {
        call.setState('denied');
        call.denied = true;
      } else if (outStatus === 'cancelled' && !d.error) {
        call.setState('cancelled');
      }
      call.complete(ts, d.error || item.error || null);
      call.step.refreshStatus();
    }

    onStepComplete(item, ts) {
      const so = item.data || {};
      const fn = so.action || so.function;
      const index = Number.isInteger(so.step) ? so.step : this.curStep;
      const card = this.ensureStep(index, ts);
      this.evSteps += 1;
      if (this.pendingFinal && this.pendingFinal.step === index) this.pendingFinal = null;
      if (this.pendingTokens && this.pendingTokens.step === index) {
        card.addTokens(this.pendingTokens.usage);
        this.pendingTokens = null;
      }
      if (fn && typeof fn === 'object' && (fn.name || fn.id)) {
        const call = this.ensureCall(fn, index, ts);
        call.setObservation(so.observation, so.status, call.denied);
        if (so.error) call.setError(so.error);
      } else if (so.observation !== null && so.observation !== undefined && so.observation !== '') {
        if (so.status === 'error') {
          const text = typeof so.observation === 'string' ? so.observation : pretty(so.observation);
          card.addError(card.notes.childElementCount ? 'Sent back to the model' : 'Step failed', text);
        } else {
          card.notes.appendChild(h('div', { class: 'observation' }, h('div', { class: 'label' }, 'Observation'), valueBlock(so.observation)));
        }
      }
      if (so.status === 'error' && (!card.calls.length)) card.setStatus('error');
      else card.refreshStatus();
      if (so.status === 'error' && fn && isFinalFn(fn)) card.setStatus('retry');
      card.renderMeta(ts);
      this.lastStepEndTs = ts;
      this.setModelPending(true, ts);
    }

    onCancelReceived(item, ts) {
      if (this.cancelNoted) return;
      this.cancelNoted = true;
      this.cancelState = 'requested';
      this.cancelBtn.disabled = true;
      setText(this.cancelBtn.lastChild, 'Cancelling…');
      this.appendTimeline(h('div', { class: 'note note-warn', testid: 'cancel-note' }, icon('stop'),
        h('span', {}, 'Cancel requested — the run stops at the next safe point.'), h('span', { class: 'note-time muted' }, fmtTime(ts))));
    }

    onCancelled(item, ts) {
      const d = item.data || {};
      this.cancelState = 'done';
      this.showCancelled(d.message || 'The run was cancelled.', ts, d.step_count);
    }

    showCancelled(message, ts, stepCount) {
      if (this.cancelledShown) return;
      this.cancelledShown = true;
      for (const c of this.calls.values()) {
        c.interrupt();
        c.step.refreshStatus();
      }
      this.setModelPending(false);
      this.appendTimeline(h('article', { class: 'card outcome outcome-cancelled', testid: 'run-cancelled' },
        h('header', { class: 'outcome-head' }, icon('stop'), h('span', {}, 'Run cancelled'), h('span', { class: 'spacer' }),
          h('span', { class: 'muted small' }, fmtTime(ts))),
        h('p', { class: 'outcome-text' }, message,
          Number.isInteger(stepCount) ? ` (after ${stepCount} step${stepCount === 1 ? '' : 's'})` : '')));
    }

    onComplete(item, ts) {
      const r = item.data || {};
      const status = r.status || (item.error ? 'error' : 'success');
      this.finalStatus = status;
      this.finalResult = r;
      this.endTs = ts;
      this.setModelPending(false);
      if (r.usage) this.evUsage = r.usage;
      if (Array.isArray(r.step_history)) this.evSteps = r.step_history.length;
      if (status !== 'waiting_for_approval') {
        this.streamDone = true;
        for (const c of this.calls.values()) {
          c.interrupt();
          c.step.refreshStatus();
        }
        for (const card of this.approvals.values()) if (!card.decided) card.resolve('expired');
      } else {
        this.streamDone = true; // the server closes the stream; we poll and follow again on resume
      }
      if (status === 'success') {
        const fn = this.pendingFinal ? this.pendingFinal.fn : null;
        const answer = 'answer' in r ? r.answer : finalAnswerOf(fn);
        this.appendTimeline(h('article', { class: 'card final-answer', testid: 'final-answer' },
          h('header', { class: 'outcome-head' }, icon('flag'), h('span', {}, 'Final answer'), h('span', { class: 'spacer' }),
            h('span', { class: 'muted small' }, fmtTime(ts))),
          fn && fn.thought ? h('div', { class: 'thought final-thought' }, h('div', { class: 'label' }, icon('brain'), 'Thought'), h('p', {}, fn.thought)) : null,
          h('div', { class: 'final-body' }, answerBlock(answer))));
      } else if (status === 'cancelled') {
        this.showCancelled(r.error || 'The run was cancelled.', ts);
      } else if (status === 'waiting_for_approval') {
        this.appendTimeline(h('div', { class: 'note note-warn' }, icon('warn'),
          h('span', {}, 'The run is suspended until the pending tool call is decided.'), h('span', { class: 'note-time muted' }, fmtTime(ts))));
        this.mergePendingFromSummary();
      } else {
        const title = status === 'max_steps' ? 'Stopped: step limit reached' : 'Run failed';
        this.appendTimeline(h('article', { class: `card outcome outcome-${status}`, testid: 'run-failed' },
          h('header', { class: 'outcome-head' }, icon(status === 'max_steps' ? 'warn' : 'x'), h('span', {}, title),
            r.error_type ? h('code', { class: 'error-type' }, r.error_type) : null, h('span', { class: 'spacer' }),
            h('span', { class: 'muted small' }, fmtTime(ts))),
          r.error ? h('pre', { class: 'code outcome-error' }, String(r.error)) : null));
      }
      this.updateApprovalAlert();
      this.setConn('ended');
      // the trace is complete now; refresh the header from the server's final record
      this.loadTrace(false);
      this.refreshSummarySoon();
    }

    async refreshSummarySoon() {
      await sleep(150, this.abort.signal);
      if (this.destroyed) return;
      try {
        const { data } = await api('GET', 'runs/' + enc(this.runId), undefined, { signal: this.abort.signal });
        if (this.destroyed) return;
        this.summary = data || this.summary;
        this.applySummary();
      } catch (e) { /* the header keeps the streamed values */ }
      this.scheduleSummaryPoll();
    }

    // ------------------------------------------------------------------ actions
    async postDecision(card, decision, extra) {
      try {
        await api('POST', `runs/${enc(this.runId)}/approvals/${enc(card.callId)}`, {
          decision, reason: extra.reason === undefined ? null : extra.reason,
          kwargs: extra.kwargs === undefined ? null : extra.kwargs, always: false,
        });
        banner.hide();
        if (this.finalStatus === 'waiting_for_approval') {
          clearTimeout(this.summaryTimer);
          this.summaryTimer = setTimeout(() => this.pollSummary(), 400);
        }
        return true;
      } catch (e) {
        let msg;
        if (e instanceof ApiError && e.status === 409) msg = `Not accepted: ${e.message || 'this call is no longer waiting for a decision'}`;
        else if (e instanceof ApiError && e.status === 422) msg = `Rejected: ${e.message}`;
        else msg = errMsg(e, 'Could not send the decision');
        card.showError(msg);
        banner.show(msg);
        return false;
      }
    }

    async cancel() {
      if (this.cancelBtn.disabled) return;
      this.cancelBtn.disabled = true;
      const label = this.cancelBtn.lastChild;
      setText(label, 'Cancelling…');
      try {
        const { data } = await api('POST', `runs/${enc(this.runId)}/cancel`, {});
        if (data && data.accepted === false) {
          banner.show('The server did not accept the cancel request — the run may be finishing.');
        }
        this.cancelState = this.cancelState || 'requested';
      } catch (e) {
        if (e instanceof ApiError && e.status === 409) {
          banner.show(`Cannot cancel: ${e.message || 'the run is not live'}`);
          this.cancelState = 'done';
        } else {
          banner.show(errMsg(e, 'Could not cancel the run'));
          this.cancelBtn.disabled = false;
          setText(label, 'Cancel run');
        }
      }
      this.renderHeader();
    }

    async continueSession() {
      if (this.continueBtn.disabled) return;
      const input = this.continueInput.value;
      if (!input.trim()) {
        this.continueInput.focus();
        return;
      }
      this.continueBtn.disabled = true;
      try {
        const { data } = await api('POST', 'runs', {
          input, session_id: this.summary.session_id, agent: this.summary.agent || null,
        });
        if (!data || !data.run_id) throw new Error('the server returned no run id');
        navigate('#/runs/' + enc(data.run_id));
      } catch (e) {
        banner.show(errMsg(e, 'Could not continue the session'));
      } finally {
        this.continueBtn.disabled = false;
      }
    }

    // ------------------------------------------------------------------ trace
    async loadTrace(showLoading) {
      clearTimeout(this.traceTimer);
      if (this.destroyed) return;
      if (showLoading && !this.trace.data) this.trace.renderMessage('Loading trace…', true);
      try {
        const { data } = await api('GET', `runs/${enc(this.runId)}/trace`, undefined, { signal: this.abort.signal });
        if (this.destroyed) return;
        this.trace.render(data || {});
      } catch (e) {
        if (this.destroyed || (e && e.name === 'AbortError')) return;
        if (!this.trace.data) {
          this.trace.renderMessage(e instanceof ApiError && e.status === 404 ? 'No trace is available for this run.' : errMsg(e, 'Could not load the trace'), false, true);
        }
      }
      // keep a live run's waterfall fresh while the tab is open
      if (this.tab === 'trace' && this.isLive()) this.traceTimer = setTimeout(() => this.loadTrace(false), RUN_POLL_MS);
    }
  }

  function fmtTime(ts) {
    if (!ts) return '';
    try {
      return new Date(ts * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    } catch (e) {
      return '';
    }
  }

  // ====================================================================== boot
  function boot() {
    app.root = document.getElementById('app');
    banner.init();
    absorbTokenFromHash();
    window.addEventListener('hashchange', route);
    route();
    loadInfo();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
