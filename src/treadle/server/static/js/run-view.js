/* treadle web console — The run page (#/runs/<id>): header, tabs, the SSE stream, cancel, the trace tab. */
import { RUN_POLL_MS, STATUS_LABELS, TERMINAL, clear, copyText, fmtAge, fmtDate, fmtDuration, fmtElapsed, fmtInt, h, icon, nowS, oneLine, setText, shortId, sleep, statusBadge, tokensOf, updateBadge, usageTitle } from './util.js';
import { ApiError, api, authHeaders, banner, enc, errMsg, getToken, readSSE, tokenPrompt } from './api.js';
import { RunTimeline } from './timeline.js';
import { TraceView } from './trace.js';
import { SessionBox } from './sessions.js';
import { ChildRun, attachChild } from './nested.js';

// ====================================================================== run page
class RunView extends RunTimeline {
  constructor(root, runId) {
    super();
    this.root = root;
    this.runId = runId;
    this.destroyed = false;
    this.abort = new AbortController();
    this.summary = null;
    this.lastSeq = -1;
    this.lastKey = null; // the last SSE id, [seq, k] (k > 0: a child run's event after seq)
    this.childTimers = new Map();
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

    this.sessionBox = new SessionBox(() => this.summary);

    this.root.append(
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/', class: 'back-link' }, icon('back'), 'All runs')),
      this.header, this.approvalAlert, tabs, this.timeline, this.tracePanel, this.sessionBox.el);
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
      this.addApproval({ call_id: pa.call_id, tool_name: pa.tool_name, kwargs: pa.kwargs, thought: pa.thought,
        question: pa.question }, null);
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
      this.sessionBox.show(s.session_id);
    }
    setText(this.stStarted.v, fmtAge(s.created_at));
    this.stStarted.v.title = fmtDate(s.created_at);
    this.attachChildren();
    this.applyDecidable();
    this.renderHeader();
  }

  /** Approval cards offer decisions only when this server can continue the run (the
   * summary's can_decide); otherwise they say why (cannot_decide_reason). */
  applyDecidable() {
    const s = this.summary || {};
    const why = s.can_decide === false ? (s.cannot_decide_reason || 'this server cannot continue the run') : null;
    for (const card of this.approvals.values()) card.lock(why);
  }

  addApproval(req, call) {
    const card = super.addApproval(req, call);
    this.applyDecidable();
    return card;
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
          if (this.lastKey) headers['Last-Event-ID'] = this.lastKey[1] ? this.lastKey.join('.') : String(this.lastKey[0]);
          else if (this.lastSeq >= 0) headers['Last-Event-ID'] = String(this.lastSeq);
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
    if (env.depth > 0) return this.onNested(env, msg.id);
    let seq = Number.isInteger(env.seq) ? env.seq : parseInt(msg.id, 10);
    if (!Number.isFinite(seq)) seq = this.lastSeq + 1;
    if (seq <= this.lastSeq) return false; // replayed duplicate
    this.lastSeq = seq;
    this.lastKey = [seq, 0];
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

  /** A child run's event (an agent called as a tool): refresh its open timeline, not ours. */
  onNested(env, id) {
    const m = /^(\d+)\.(\d+)$/.exec(String(id || ''));
    if (m) {
      const key = [Number(m[1]), Number(m[2])];
      const last = this.lastKey || [this.lastSeq, 0];
      if (key[0] < last[0] || (key[0] === last[0] && key[1] <= last[1])) return false; // replayed duplicate
      this.lastKey = key;
    }
    const name = env.name || '';
    if (name !== 'agent.step_complete' && name !== 'agent.execution_complete' && name !== 'agent.tool_call_complete') return true;
    for (const box of this.timeline.querySelectorAll('.child-run:not([hidden])')) {
      const runId = box.dataset.runId;
      if (runId !== env.run_id || this.childTimers.has(runId)) continue;
      this.childTimers.set(runId, setTimeout(() => {
        this.childTimers.delete(runId);
        if (box.childRun instanceof ChildRun) box.childRun.load();
      }, 300));
    }
    return true;
  }

  /** The summary's child runs, on the calls (and guardrail notes) that ran them. */
  attachChildren() {
    const list = this.summary && Array.isArray(this.summary.children) ? this.summary.children : [];
    for (const link of list) {
      if (link.kind === 'tool' && link.call_id && this.calls.has(link.call_id)) {
        attachChild(this.calls.get(link.call_id), link);
      } else if (link.kind === 'guardrail') {
        const note = [...this.timeline.querySelectorAll('.note-guardrail')].find((n) => n.dataset.key === link.parent_call_id);
        if (note && !note.dataset.child) {
          note.dataset.child = link.run_id;
          const child = new ChildRun(link, 1);
          note.after(child.el);
        }
      }
    }
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

export { RunView };
