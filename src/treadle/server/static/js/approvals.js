/* treadle web console — An approval card: approve, deny with a reason, or edit the arguments of a tool call. */
import { QuestionForm, questionOf } from './questions.js';
import { clear, h, icon, setText, valueBlock } from './util.js';

// ====================================================================== run page: pieces
class ApprovalCard {
  constructor(view, req) {
    this.view = view;
    this.callId = req.call_id;
    this.toolName = req.tool_name || 'tool';
    this.kwargs = req.kwargs || {};
    this.state = 'pending';
    this.busy = false;
    this.locked = null; // why this server cannot decide (the run's can_decide is false), else null

    this.pill = h('span', { class: 'decision-pill', hidden: true });
    this.errorEl = h('div', { class: 'inline-error', role: 'alert', hidden: true });
    this.lockNote = h('div', { class: 'approval-locked', testid: 'approval-locked', role: 'note', hidden: true });
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
    this.question = questionOf(req);
    if (this.question) {
      this.buildQuestion(req);
      return;
    }
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
    this.actions = h('div', { class: 'approval-actions' },
      this.approveBtn,
      h('div', { class: 'deny-group' }, this.reason, this.denyBtn),
      this.editBtn),
    this.lockNote,
    this.editPanel,
    this.errorEl);
  }

  /** A question a tool asks: its text, a form from its schema, Answer or Decline (the answer is
   * the call's edited arguments; a request for the run's own model is approved or denied). */
  buildQuestion(req) {
    const q = this.question;
    const answerable = q.kind !== 'mcp_sampling';
    this.form = answerable ? new QuestionForm(q, this.kwargs) : null;
    this.answerBtn = h('button', { type: 'button', class: 'btn btn-success', testid: 'answer-btn', onclick: () => this.answer() },
      icon('check'), h('span', {}, 'Answer'));
    this.denyBtn.lastChild.textContent = 'Decline';
    const title = q.kind === 'mcp_elicitation' ? 'Question' : 'Model request';
    this.el = h('section', {
      class: 'approval-card is-pending is-question', testid: 'approval-card', dataset: { callId: this.callId, state: 'pending' },
      'aria-label': `${title} from ${q.tool || this.toolName}`,
    },
    h('header', { class: 'approval-head' },
      this.iconSlot = h('span', { class: 'approval-icon-slot' }, icon('warn', 'approval-icon')),
      this.title = h('span', { class: 'approval-title' }, title),
      this.pill),
    h('p', { class: 'approval-lead', testid: 'question-text' }, String(q.message || q.prompt || '')),
    this.form ? this.form.el : null,
    req.thought && req.thought !== q.message ? h('p', { class: 'approval-thought' }, req.thought) : null,
    this.actions = h('div', { class: 'approval-actions' },
      answerable ? this.answerBtn : this.approveBtn,
      h('div', { class: 'deny-group' }, this.reason, this.denyBtn)),
    this.lockNote,
    this.errorEl);
  }

  answer() {
    this.send('edit', { kwargs: this.form ? this.form.read() : {} });
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
    return [this.approveBtn, this.denyBtn, this.editBtn, this.reason, this.editArea, this.editSave, this.editCancel,
      ...(this.answerBtn ? [this.answerBtn] : [])];
  }

  setBusy(b) {
    this.busy = b;
    this.el.classList.toggle('is-busy', b);
    for (const c of this.controls()) c.disabled = b || this.decided || !!this.locked;
  }

  /** Offer no decision, and say why (reason), or offer them again (null): the server only
   * takes decisions on runs it can continue. */
  lock(reason) {
    const why = reason ? String(reason) : null;
    if (why === this.locked) return;
    this.locked = why;
    this.el.classList.toggle('is-locked', !!why);
    this.actions.hidden = !!why;
    if (why) this.editPanel.hidden = true;
    this.lockNote.hidden = !why;
    setText(this.lockNote, why ? `This server cannot decide this call: ${why}` : '');
    for (const c of this.controls()) c.disabled = this.busy || this.decided || !!why;
    this.view.updateApprovalAlert();
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
    if (this.busy || this.decided || this.locked) return;
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
      approved: 'approved', edited: this.question ? 'answered' : 'approved (edited)',
      denied: this.question ? 'declined' : 'denied', expired: 'no longer pending',
    }[this.state] || this.state;
    clear(this.iconSlot).appendChild(icon('eye', 'approval-icon'));
    setText(this.title, this.question ? `${this.title.textContent} answered` : `Approval for ${this.toolName}`);
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

export { ApprovalCard };
