/* treadle web console — the entry point (index.html loads it as <script type="module">).
 *
 * Native ES modules, no dependencies and no build step; one module per view:
 *   shell.js      app state, hash routes (#/ the runs list, #/runs/<id> one run), server info
 *   runs-list.js  #/  the runs list with a "New run" form
 *   run-view.js   #/runs/<id>  header, tabs, the SSE stream, cancel
 *   timeline.js   the run's live timeline (steps, tool calls), approvals.js its approval cards
 *   trace.js      the trace waterfall; sessions.js the "continue this session" box
 *   api.js        the API client (JSON calls, SSE reader, token); util.js shared helpers
 *
 * API calls use relative URLs (runs, info, ...) so the console also works behind a
 * path prefix. A bearer token, when needed, lives in sessionStorage and is only ever
 * sent in the Authorization header.
 *
 * Boot: the router that picks a view per hash route. */
import { clear } from './util.js';
import { absorbTokenFromHash, banner } from './api.js';
import { app, loadInfo, parseRoute } from './shell.js';
import { RunsView } from './runs-list.js';
import { RunView } from './run-view.js';

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

// ====================================================================== boot
function boot() {
  app.route = route;
  app.root = document.getElementById('app');
  banner.init();
  absorbTokenFromHash();
  window.addEventListener('hashchange', route);
  route();
  loadInfo();
}

boot();  // a module script runs once the document is parsed
