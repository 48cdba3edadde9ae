/* treadle web console — The runs list (#/): the new-run form and the live table of runs. */
import { LIST_POLL_MS, TERMINAL, clear, fmtAge, fmtCompact, fmtDate, h, icon, oneLine, setText, shortId, statusBadge, tokensOf, truncate, updateBadge, usageTitle } from './util.js';
import { ApiError, api, banner, enc, errMsg } from './api.js';
import { app, navigate } from './shell.js';

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
      const { data } = await api('GET', 'runs?limit=100&top_level=true');
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

export { RunsView };
