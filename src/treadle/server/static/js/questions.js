/* treadle web console — The question a running tool asks (an MCP server's elicitation, or a served tool's
 * ask_host / sample_host): its text and a form built from its schema, answered as the call's edited arguments. */
import { h } from './util.js';

const KINDS = ['mcp_elicitation', 'mcp_host_sampling', 'mcp_sampling'];

/** The question of a pending request (its confirmation details, or a journaled run's `question`), else null. */
function questionOf(req) {
  const d = req.question || req.confirmation_details;
  return d && typeof d === 'object' && KINDS.includes(d.kind) ? d : null;
}

function choicesOf(prop) {
  if (Array.isArray(prop.enum)) {
    const names = Array.isArray(prop.enumNames) ? prop.enumNames : prop.enum;
    return prop.enum.map((v, i) => ({ value: v, title: String(names[i] ?? v) }));
  }
  const list = prop.oneOf || prop.anyOf;
  if (Array.isArray(list)) return list.filter((c) => c && 'const' in c).map((c) => ({ value: c.const, title: String(c.title ?? c.const) }));
  return null;
}

/** One input per property of a flat JSON object schema; `read()` gives the answer object. */
class QuestionForm {
  constructor(question, proposed) {
    this.fields = [];
    const schema = question.schema && typeof question.schema === 'object' ? question.schema : {};
    const props = schema.properties && typeof schema.properties === 'object' ? schema.properties : {};
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    this.el = h('div', { class: 'question-form', testid: 'question-form' });
    for (const [name, prop] of Object.entries(props)) {
      const p = prop && typeof prop === 'object' ? prop : {};
      const start = proposed && name in proposed ? proposed[name] : p.default;
      this.el.appendChild(this.field(name, p, start, required.has(name)));
    }
    if (question.kind === 'mcp_host_sampling') {
      const area = h('textarea', { class: 'input textarea', rows: 4, testid: 'question-field-text', 'aria-label': 'Reply' });
      this.fields.push({ name: 'text', read: () => area.value });
      this.el.appendChild(h('label', { class: 'field' }, h('span', { class: 'field-label' }, 'Reply'), area));
    }
  }

  field(name, prop, start, required) {
    const label = `${prop.title || name}${required ? ' *' : ''}`;
    const hint = prop.description ? h('span', { class: 'muted small' }, prop.description) : null;
    const testid = `question-field-${name}`;
    let input;
    let read;
    const items = prop.type === 'array' && prop.items && typeof prop.items === 'object' ? choicesOf(prop.items) : null;
    const choices = choicesOf(prop);
    if (items) {
      const chosen = new Set(Array.isArray(start) ? start : []);
      const boxes = items.map((c) => h('input', { type: 'checkbox', value: String(c.value), checked: chosen.has(c.value) }));
      input = h('div', { class: 'question-choices', testid }, ...items.map((c, i) => h('label', { class: 'field-inline' }, boxes[i], c.title)));
      read = () => items.filter((_, i) => boxes[i].checked).map((c) => c.value);
    } else if (choices) {
      input = h('select', { class: 'input input-sm', testid, 'aria-label': label },
        required ? null : h('option', { value: '' }, '—'),
        ...choices.map((c) => h('option', { value: String(c.value), selected: c.value === start }, c.title)));
      read = () => (input.value === '' ? undefined : choices.find((c) => String(c.value) === input.value)?.value);
    } else if (prop.type === 'boolean') {
      input = h('input', { type: 'checkbox', testid, checked: start === true, 'aria-label': label });
      read = () => input.checked;
    } else if (prop.type === 'number' || prop.type === 'integer') {
      input = h('input', { type: 'number', class: 'input input-sm', testid, step: prop.type === 'integer' ? '1' : 'any',
        value: start === undefined ? '' : String(start), 'aria-label': label });
      read = () => (input.value === '' ? undefined : Number(input.value));
    } else {
      input = h('input', { type: 'text', class: 'input input-sm', testid, value: start === undefined ? '' : String(start),
        'aria-label': label, autocomplete: 'off' });
      read = () => (input.value === '' ? undefined : input.value);
    }
    this.fields.push({ name, read });
    return h('label', { class: prop.type === 'boolean' ? 'field field-inline' : 'field' }, h('span', { class: 'field-label' }, label), input, hint);
  }

  /** The answer: each field with a value. */
  read() {
    const out = {};
    for (const f of this.fields) {
      const v = f.read();
      if (v !== undefined) out[f.name] = v;
    }
    return out;
  }
}

export { QuestionForm, questionOf };
