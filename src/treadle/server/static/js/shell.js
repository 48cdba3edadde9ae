/* treadle web console — The app shell: shared state, hash routes, the server info in the top bar. */
import { clear, h } from './util.js';
import { api } from './api.js';

// ====================================================================== app shell
const app = {
  root: null,
  view: null,
  info: null,
  infoListeners: new Set(),
  route: () => {},  // set by main.js
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
  if (location.hash === hash) app.route();
  else location.hash = hash;
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

export { app, loadInfo, navigate, parseRoute };
