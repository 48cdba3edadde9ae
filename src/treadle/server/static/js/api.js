/* treadle web console — The API client: the error banner, the bearer token (session storage), JSON calls, the SSE reader. */
import { TOKEN_KEY, formatDetail, setText } from './util.js';

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

export { ApiError, absorbTokenFromHash, api, authHeaders, banner, enc, errMsg, getToken, readSSE, tokenPrompt };
