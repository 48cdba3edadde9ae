/* treadle web console — Chat sessions: the "continue this session" box on a run page. */
import { h, icon, setText } from './util.js';
import { api, banner, enc, errMsg } from './api.js';
import { navigate } from './shell.js';

class SessionBox {
  /** getSummary: () => the run summary whose session a follow-up continues. */
  constructor(getSummary) {
    this.getSummary = getSummary;
    this.input = h('textarea', {
      class: 'input textarea', rows: 2, testid: 'continue-input', placeholder: 'Send a follow-up message…', 'aria-label': 'Follow-up message',
      onkeydown: (e) => {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          this.submit();
        }
      },
    });
    this.button = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'continue-submit' }, icon('send'), h('span', {}, 'Send'));
    this.sid = h('code', { class: 'session-chip' });
    this.el = h('form', {
      class: 'card continue-box', hidden: true, novalidate: true, onsubmit: (e) => {
        e.preventDefault();
        this.submit();
      },
    },
    h('div', { class: 'card-head' }, h('h2', { class: 'card-title' }, 'Continue this session'), this.sid),
    h('div', { class: 'card-body continue-row' }, this.input, this.button));
  }

  show(sessionId) {
    this.el.hidden = false;
    setText(this.sid, sessionId);
    this.sid.title = 'session id';
  }

  async submit() {
    const summary = this.getSummary() || {};
    if (this.button.disabled) return;
    const input = this.input.value;
    if (!input.trim()) {
      this.input.focus();
      return;
    }
    this.button.disabled = true;
    try {
      const { data } = await api('POST', 'runs', {
        input, session_id: summary.session_id, agent: summary.agent || null,
      });
      if (!data || !data.run_id) throw new Error('the server returned no run id');
      navigate('#/runs/' + enc(data.run_id));
    } catch (e) {
      banner.show(errMsg(e, 'Could not continue the session'));
    } finally {
      this.button.disabled = false;
    }
  }
}

export { SessionBox };
