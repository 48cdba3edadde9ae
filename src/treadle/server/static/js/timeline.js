/* treadle web console — A run's live timeline: step cards, tool-call blocks, and the event handlers that fill them. */
import { answerBlock, clear, finalAnswerOf, fmtDuration, fmtElapsed, fmtInt, fmtTime, formatActivity, h, icon, isFinalFn, nowS, pretty, progressFraction, sameJson, setText, tokensOf, usageTitle, valueBlock } from './util.js';
import { ApprovalCard } from './approvals.js';
import { attachChild, childOfOutput, compactionNote, guardrailNote, handoffNote } from './nested.js';

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
        this.badge, this.agentTag = h('span', { class: 'chip chip-speaker', testid: 'step-agent', hidden: true }),
        h('span', { class: 'spacer' }), this.meta),
      this.body, this.notes);
    this.done = false;
    this.status = 'running';
  }

  // the agent speaking in this step, when it is not the one the run started with (after a handoff)
  setAgent(name, first) {
    if (!name || name === first) return;
    this.agentTag.hidden = false;
    setText(this.agentTag, name);
    this.agentTag.title = `the ${name} agent (handed to)`;
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

// The part of the run page that turns events into the timeline (RunView extends it).
class RunTimeline {
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
    if (ev.agent && !this.firstAgent) this.firstAgent = ev.agent; // who speaks first: the run's own agent
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
      case 'agent.execution_complete': return this.onComplete(item, ts, ev.agent);
      case 'agent.handoff': return this.appendTimeline(handoffNote(item.data || {}, ts));
      case 'agent.guardrail': return this.appendTimeline(guardrailNote(item.data || {}, ts));
      case 'agent.compaction': return this.appendTimeline(compactionNote(item.data || {}, ts));
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
        card.setAgent(ev.agent, this.firstAgent);
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
    const pending = [...this.approvals.values()].filter((c) => !c.decided && !c.locked);
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
    attachChild(call, childOfOutput(out));
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

  onComplete(item, ts, agent) {
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
        h('header', { class: 'outcome-head' }, icon('flag'), h('span', {}, 'Final answer'),
          agent && agent !== this.firstAgent ? h('span', { class: 'chip chip-speaker', testid: 'answer-agent', title: `given by the ${agent} agent (handed to)` }, agent) : null,
          h('span', { class: 'spacer' }),
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

}

export { RunTimeline };
