// procrefd's dashboard: services, a service's leases, log and kernel-count timeline, and the
// audit log. Everything comes from the REST API of the daemon that served this page (same
// origin). Live: a long-poll on /v1/events; when it fails, /v1/status is polled with its ETag.
// The token (admin or read) is kept in sessionStorage, never in a URL.
'use strict';

const state = {
  token: sessionStorage.getItem('procrefd.token') || '',
  admin: false,
  services: [],
  selected: '',
  leases: [],
  lastEventId: 0,
  statusTag: '',
  olderCursor: null,
  onNewestPage: true,
  // Over TCP the audit log and service output need a token (read or admin) unless the
  // operator opened them: without one the page shows services and polls /v1/status.
  auditReadable: true,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const WINDOWS = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 24 * 3600e3, '7d': 7 * 24 * 3600e3 };

class APIError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || 'HTTP ' + status);
    this.status = status;
  }
}

/** One request: {status, body, etag}. Problems (4xx, 5xx) throw APIError. */
async function request(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: 'no-store', credentials: 'omit' }));
  if (response.status === 304) return { status: 304, body: null, etag: response.headers.get('etag') };
  const type = response.headers.get('content-type') || '';
  const body = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) throw new APIError(response.status, typeof body === 'object' ? body : { detail: body });
  return { status: response.status, body, etag: response.headers.get('etag') };
}

const api = async (path, options) => (await request(path, options)).body;
const enc = encodeURIComponent;

// ---- small DOM helpers (text only: nothing from the API is ever parsed as HTML) ----

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell === null || cell === undefined ? '—' : String(cell);
    tr.append(td);
  }
  return tr;
}

function badge(stateName) {
  return element('span', stateName, 'state state-' + stateName);
}

function kindBadge(kind) {
  return element('span', kind, 'kind kind-' + kind.split('.')[0]);
}

function since(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return seconds + ' s ago';
  if (seconds < 3600) return Math.floor(seconds / 60) + ' min ago';
  if (seconds < 86400) return Math.floor(seconds / 3600) + ' h ago';
  return Math.floor(seconds / 86400) + ' d ago';
}

function say(text) {
  $('message').hidden = !text;
  $('message').textContent = text || '';
}

const AUDIT_NEEDS_TOKEN = 'The audit log and service output need a token: enter the read token or the admin token.';

function report(error) {
  if (error instanceof APIError && error.status === 401) {
    say(state.auditReadable ? 'This daemon needs a token for reads over TCP: enter the read token or the admin token.' : AUDIT_NEEDS_TOKEN);
  } else {
    say(String(error.message || error));
  }
}

// ---- the URL keeps the view: #service=…&kind=…&window=…&user=…&detail=… ----

function readView() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { service: params.get('service') || '', kind: params.get('kind') || '', window: params.get('window') || '', user: params.get('user') || '', detail: params.get('detail') || '' };
}

function writeView() {
  const params = new URLSearchParams();
  const view = { service: $('filter-service').value, kind: $('filter-kind').value, window: $('filter-window').value, user: $('filter-user').value.trim(), detail: state.selected };
  for (const [key, value] of Object.entries(view)) if (value) params.set(key, value);
  const text = params.toString();
  history.replaceState(null, '', text ? '#' + text : location.pathname + location.search);
}

function applyView() {
  const view = readView();
  ensureOption($('filter-service'), view.service);
  $('filter-service').value = view.service;
  $('filter-kind').value = view.kind;
  $('filter-window').value = WINDOWS[view.window] ? view.window : '';
  $('filter-user').value = view.user;
  state.selected = view.detail;
}

function ensureOption(select, value) {
  if (value && ![...select.options].some((option) => option.value === value)) select.append(new Option(value, value));
}

// ---- who we are ----

async function refreshRole() {
  const daemon = await api('/v1/daemon');
  state.admin = daemon.admin === true;
  state.auditReadable = daemon.can_read.includes('events') && daemon.can_read.includes('logs');
  $('daemon').textContent = `pid ${daemon.pid} · ${daemon.version} · ${daemon.state_dir} · started ${since(daemon.started_at)}`;
  $('role').textContent = state.admin ? 'admin' : state.token ? 'read-only token' : 'read-only';
  $('forget-token').hidden = !state.token;
  for (const node of document.querySelectorAll('.admin-only')) node.hidden = !state.admin;
}

// ---- services ----

async function refreshServices() {
  state.services = (await api('/v1/services')).services;
  const body = $('services').tBodies[0];
  body.replaceChildren(...state.services.map((service) => {
    const slots = service.definition.slots;
    const note = service.failure_reason || (service.linger_until ? 'lingers until ' + new Date(service.linger_until).toLocaleTimeString() : null);
    const since_ = element('span', since(service.state_since), 'since');
    since_.title = service.state_since;
    since_.dataset.since = service.state_since;
    const tr = row([
      service.name, badge(service.state), service.count, service.leases, service.connections ?? '—',
      slots ? `${service.queued} queued · ${slots} slots` : '—', service.pid, since_, service.restarts, service.last_health, note,
    ]);
    tr.className = 'service' + (service.name === state.selected ? ' selected' : '');
    tr.dataset.service = service.name;
    tr.addEventListener('click', () => select(service.name));
    return tr;
  }));
  const filter = $('filter-service');
  for (const service of state.services) ensureOption(filter, service.name);
}

/** Capacity groups, when the config file has any: room in use, who runs, who waits. */
async function refreshGroups() {
  const groups = (await api('/v1/groups')).groups;
  $('groups-section').hidden = groups.length === 0;
  $('groups').tBodies[0].replaceChildren(...groups.map((group) => row([
    group.name, group.in_use, group.capacity, group.running.join(', ') || '—', group.queued.join(', ') || '—',
  ])));
}

function select(name) {
  state.selected = state.selected === name ? '' : name;
  writeView();
  for (const tr of $('services').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.service === state.selected);
  refreshDetail().catch(report);
}

// ---- one service: leases, log, timeline ----

async function refreshDetail() {
  const name = state.selected;
  $('detail').hidden = !name;
  if (!name) return;
  $('detail-name').textContent = name;
  const hourAgo = new Date(Date.now() - 3600e3).toISOString();
  const [leases, log, events] = await Promise.all([
    api('/v1/leases?service=' + enc(name)),
    state.auditReadable ? api(`/v1/services/${enc(name)}/logs?tail=30`) : null,
    state.auditReadable ? api(`/v1/events?service=${enc(name)}&since=${enc(hourAgo)}&order=asc&limit=1000`) : null,
  ]);
  if (name !== state.selected) return;
  state.leases = leases.leases;
  renderLeases();
  $('log').textContent = state.auditReadable ? log || '(no output yet)' : '(the service output needs a token)';
  drawTimeline(events ? events.events : [], state.services.find((service) => service.name === name));
}

function renderLeases() {
  const body = $('leases').tBodies[0];
  body.replaceChildren(...state.leases.map((lease) => {
    const ttl = element('span', '', 'ttl');
    ttl.dataset.expires = lease.expires_at || '';
    const cells = [lease.id, lease.owner, lease.holder || '—', lease.holder_pid, lease.client_pid, ttl];
    if (state.admin) {
      const release = element('button', 'Release');
      release.type = 'button';
      release.className = 'release';
      release.addEventListener('click', () => act(`/v1/leases/${enc(lease.id)}`, 'DELETE'));
      cells.push(release);
    }
    return row(cells);
  }));
  tick();
}

/** Every second: TTL countdowns and "since" times move on without a request. */
function tick() {
  for (const node of document.querySelectorAll('#services .since')) node.textContent = since(node.dataset.since);
  for (const node of document.querySelectorAll('#leases .ttl')) {
    if (!node.dataset.expires) { node.textContent = 'until its client exits'; continue; }
    const left = Math.max(0, Date.parse(node.dataset.expires) - Date.now());
    node.textContent = (left / 1000).toFixed(0) + ' s';
  }
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

/** A step line of the kernel count (the `count` in the audit details) over the last hour. */
function drawTimeline(events, service) {
  const width = 600, height = 120, end = Date.now(), start = end - 3600e3;
  const points = events
    .filter((event) => event.detail && typeof event.detail.count === 'number')
    .map((event) => [Date.parse(event.time), event.detail.count]);
  const now = service && typeof service.count === 'number' ? service.count : points.length ? points[points.length - 1][1] : 0;
  const highest = Math.max(1, now, ...points.map((point) => point[1]));
  const x = (time) => ((Math.max(start, time) - start) / (end - start)) * width;
  const y = (count) => height - 10 - (count / highest) * (height - 25);
  let path = `M 0 ${y(points.length ? 0 : now)}`;
  for (const [time, count] of points) path += ` H ${x(time).toFixed(1)} V ${y(count).toFixed(1)}`;
  path += ` H ${width}`;
  $('timeline-label').textContent = `now ${now}, highest ${highest} (${points.length} changes in the hour)`;
  $('timeline').replaceChildren(
    svg('line', { x1: 0, y1: y(0), x2: width, y2: y(0), class: 'axis' }),
    svg('path', { d: path, class: 'line' }));
}

// ---- the audit log ----

function auditQuery(before) {
  const query = new URLSearchParams({ order: 'desc', limit: '50' });
  if ($('filter-service').value) query.set('service', $('filter-service').value);
  if ($('filter-kind').value) query.set('kind', $('filter-kind').value);
  if ($('filter-user').value.trim()) query.set('user', $('filter-user').value.trim());
  const window_ = WINDOWS[$('filter-window').value];
  if (window_) query.set('since', new Date(Date.now() - window_).toISOString());
  if (before) query.set('before', String(before));
  return '/v1/events?' + query;
}

async function refreshAudit(before) {
  const page = await api(auditQuery(before));
  state.olderCursor = page.next_before;
  state.onNewestPage = !before;
  $('older').disabled = !page.next_before;
  $('newest').disabled = !before;
  $('events').tBodies[0].replaceChildren(...page.events.map((event) => {
    const detail = element('span', JSON.stringify(event.detail));
    const tr = row([event.id, new Date(event.time).toLocaleString(), kindBadge(event.kind), event.service, event.lease, event.pid, event.actor, detail]);
    tr.lastChild.className = 'detail';
    tr.dataset.kind = event.kind;
    return tr;
  }));
}

// ---- actions (admin) ----

async function act(path, method) {
  try {
    await api(path, { method });
    say('');
  } catch (error) {
    report(error);
  }
  await refreshAll();
}

// ---- live updates ----

function setLive(on, text) {
  $('live').className = 'live ' + (on ? 'on' : 'off');
  $('live').textContent = text;
}

async function refreshAll() {
  try {
    await Promise.all([refreshServices(), refreshGroups()]);
    // An older page of the audit log stays as it is; the newest one follows.
    await Promise.all([refreshDetail(), state.onNewestPage && state.auditReadable ? refreshAudit() : null]);
    say(state.auditReadable ? '' : AUDIT_NEEDS_TOKEN);
  } catch (error) {
    report(error);
  }
}

/** Long-polls the audit log for what happens next; each batch refreshes what it touches. */
async function follow() {
  for (;;) {
    if (!state.auditReadable) {
      setLive(false, 'polling');
      await poll(1);  // one round at a time: a token entered meanwhile turns the stream on
      continue;
    }
    try {
      setLive(true, 'live');  // a long-poll is waiting for what happens next
      const page = await api(`/v1/events?after=${state.lastEventId}&order=asc&limit=500&wait_ms=20000`);
      state.lastEventId = page.next_after;
      if (page.events.length) {
        await Promise.all([refreshServices(), refreshGroups()]);
        const touched = page.events.some((event) => event.service === state.selected);
        await Promise.all([touched ? refreshDetail() : null, state.onNewestPage ? refreshAudit() : null]);
      }
    } catch (error) {
      setLive(false, 'polling');
      report(error);
      await poll();
    }
  }
}

/** The fallback: /v1/status with If-None-Match every 2 s, for `rounds` rounds, then the stream again. */
async function poll(rounds = 10) {
  for (let round = 0; round < rounds; round++) {
    await sleep(2000);
    try {
      const answer = await request('/v1/status', { headers: state.statusTag ? { 'If-None-Match': state.statusTag } : {} });
      if (answer.status !== 304) {
        state.statusTag = answer.etag;
        await refreshAll();
      }
    } catch (error) {
      report(error);
    }
  }
}

// ---- start ----

function wire() {
  $('token-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    $('token').value = '';
    if (state.token) sessionStorage.setItem('procrefd.token', state.token);
    await start();
  });
  $('forget-token').addEventListener('click', async () => {
    state.token = '';
    sessionStorage.removeItem('procrefd.token');
    await start();
  });
  $('filters').addEventListener('submit', (event) => event.preventDefault());
  for (const id of ['filter-service', 'filter-kind', 'filter-window', 'filter-user']) {
    $(id).addEventListener('change', () => {
      writeView();
      refreshAudit().catch(report);
    });
  }
  $('newest').addEventListener('click', () => refreshAudit().catch(report));
  $('older').addEventListener('click', () => refreshAudit(state.olderCursor).catch(report));
  $('close-detail').addEventListener('click', () => select(state.selected));
  $('restart').addEventListener('click', () => act(`/v1/services/${enc(state.selected)}/restart`, 'POST'));
  $('reset').addEventListener('click', () => act(`/v1/services/${enc(state.selected)}/reset`, 'POST'));
  window.addEventListener('hashchange', () => {
    applyView();
    refreshAll();
  });
  setInterval(tick, 1000);
}

let following = false;

async function start() {
  try {
    await refreshRole();
    if (state.auditReadable) {
      state.lastEventId = (await api('/v1/events?order=desc&limit=1')).next_after;
    } else {
      $('events').tBodies[0].replaceChildren();
    }
  } catch (error) {
    report(error);
    setLive(false, 'no access');
    return;
  }
  await refreshAll();
  if (!following) {
    following = true;
    follow();
  }
}

wire();
applyView();
start();
