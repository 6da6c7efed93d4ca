// The web console: services and their versions, deploys by drag and drop,
// an entity browser with each entity's state, live event log and an invoke
// form, and the live charts (live.js). Everything goes through the same
// HTTP API as any other client, with the same tokens.

import { ApiError, call, entityPath, follow, setToken, token } from './api.js';
import * as live from './live.js';

const $ = (id) => document.getElementById(id);
const ENTITIES_PER_PAGE = 50;
/** The most events the live log shows: the newest. */
const MAX_EVENT_ROWS = 500;

const view = {
  services: [],
  service: null, // the selected service's description
  entitiesAfter: null, // `next` of the last entity page read
  entity: null,
  following: null, // AbortController of the event stream
};

/** Shows what went wrong in the banner; a 401 asks for the token. */
function say(error) {
  const banner = $('banner');
  if (!error) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  banner.textContent =
    error instanceof ApiError && error.status === 401
      ? 'This server needs a token: enter it above (the admin token to deploy).'
      : String(error.message || error);
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(cells, onPick) {
  const tr = document.createElement('tr');
  tr.append(...cells);
  if (onPick) {
    tr.className = 'pick';
    tr.addEventListener('click', onPick);
  }
  return tr;
}

function emptyRow(columns, text) {
  const td = cell(text, 'empty');
  td.colSpan = columns;
  return row([td]);
}

const time = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
const json = (value) => JSON.stringify(value);

async function health() {
  const badge = $('health');
  try {
    const response = await fetch('/healthz');
    badge.textContent = response.ok ? 'healthy' : 'journal failing';
    badge.className = `badge ${response.ok ? 'ok' : 'bad'}`;
  } catch {
    badge.textContent = 'unreachable';
    badge.className = 'badge bad';
  }
}

async function loadServices() {
  try {
    view.services = await call('GET', '/v1/services');
    say(null);
  } catch (error) {
    say(error);
    return;
  }
  const body = $('services').tBodies[0];
  body.replaceChildren(
    ...(view.services.length
      ? view.services.map((s) => {
          const tr = row(
            [cell(s.service), cell(s.kind), cell(s.version), cell(s.subscriptions.join(', ') || '–')],
            () => selectService(s.service),
          );
          tr.dataset.service = s.service;
          if (view.service && view.service.service === s.service) tr.classList.add('selected');
          return tr;
        })
      : [emptyRow(4, 'no services deployed: drop a .wasm below')]),
  );
}

async function selectService(name) {
  let description;
  try {
    description = await call('GET', `/v1/services/${encodeURIComponent(name)}`);
  } catch (error) {
    say(error);
    return;
  }
  view.service = description;
  closeEntity();
  $('service').hidden = false;
  $('service-title').textContent = `${description.service} · ${description.kind}`;
  $('versions').tBodies[0].replaceChildren(
    ...description.versions
      .slice()
      .reverse()
      .map((v) => row([cell(v.version), cell(v.digest.slice(0, 12), 'json'), cell(`${Math.round(v.size / 1024)} KiB`), cell(time(v.deployed_at_ms))])),
  );
  for (const tr of $('services').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.service === name);
  $('entities').tBodies[0].replaceChildren();
  view.entitiesAfter = null;
  await loadEntities();
}

/** Reads the next page of the selected service's entities. */
async function loadEntities() {
  const service = view.service.service;
  const after = view.entitiesAfter ? `&after=${encodeURIComponent(view.entitiesAfter)}` : '';
  const more = $('entities-more');
  more.disabled = true;
  let page;
  try {
    page = await call('GET', `/v1/services/${encodeURIComponent(service)}/entities?limit=${ENTITIES_PER_PAGE}${after}`);
  } catch (error) {
    say(error);
    return;
  } finally {
    more.disabled = false;
  }
  // Another service was picked meanwhile: this page is not its.
  if (!view.service || view.service.service !== service) return;
  const body = $('entities').tBodies[0];
  if (!view.entitiesAfter) body.replaceChildren();
  for (const head of page.entities) {
    const tr = row([cell(head.entity), cell(head.last_seq)], () => openEntity(head.entity));
    tr.dataset.entity = head.entity;
    body.append(tr);
  }
  if (!body.rows.length) {
    body.append(emptyRow(2, view.service.kind === 'action' ? 'an action stores no entities' : 'no stored entities yet'));
  }
  view.entitiesAfter = page.next;
  $('entities-more').hidden = !page.next;
}

function closeEntity() {
  if (view.following) view.following.abort();
  view.following = null;
  view.entity = null;
  $('entity').hidden = true;
}

async function openEntity(id) {
  closeEntity();
  view.entity = id;
  $('entity').hidden = false;
  $('entity-title').textContent = `${view.service.service} / ${id}`;
  $('invoke-reply').textContent = '';
  $('events').tBodies[0].replaceChildren();
  for (const tr of $('entities').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.entity === id);
  await loadState();
  await loadEvents();
}

async function loadState() {
  const { service } = view.service;
  const entity = view.entity;
  let text;
  try {
    text = JSON.stringify(await call('GET', `${entityPath(service, entity)}/state`), null, 2);
  } catch (error) {
    text = error instanceof ApiError ? `${error.kind}: ${error.message.replace(/^\d+ \S+: /, '')}` : String(error);
  }
  // Only if the entity is still the one shown.
  if (view.entity === entity && view.service.service === service) $('state').textContent = text;
}

/** Reads the state again soon, once for a burst of events. */
let stateSoon = null;
function loadStateSoon() {
  if (stateSoon) return;
  stateSoon = setTimeout(() => {
    stateSoon = null;
    loadState();
  }, 250);
}

function appendEvent(event, fresh) {
  const body = $('events').tBodies[0];
  if (body.querySelector(`tr[data-seq="${event.seq}"]`)) return;
  const tr = row([cell(event.seq), cell(event.version), cell(json(event.payload), 'json')]);
  tr.dataset.seq = event.seq;
  if (fresh) tr.classList.add('new');
  body.prepend(tr);
  while (body.rows.length > MAX_EVENT_ROWS) body.deleteRow(-1);
  // The entity list says the entity's newest seq too.
  const listed = $('entities').tBodies[0].querySelector(`tr[data-entity="${CSS.escape(view.entity)}"]`);
  if (listed && Number(listed.cells[1].textContent) < event.seq) listed.cells[1].textContent = event.seq;
}

/** The event log: its backlog, then (with "live" on) every new event. */
async function loadEvents() {
  const path = `${entityPath(view.service.service, view.entity)}/events`;
  if (view.service.kind === 'crdt') return followValue(path);
  if (!$('follow').checked) {
    try {
      const { last_seq: last } = await call('GET', entityPath(view.service.service, view.entity));
      const from = Math.max(1, last - MAX_EVENT_ROWS + 1);
      const events = await call('GET', `${path}?from=${from}`);
      $('events').tBodies[0].replaceChildren();
      for (const event of events) appendEvent(event, false);
    } catch (error) {
      say(error);
    }
    return;
  }
  const controller = new AbortController();
  view.following = controller;
  const entity = view.entity;
  // The events up to the entity's last seq now are its backlog: only the
  // newest of them are shown, and only those after are new.
  let last = 0;
  try {
    last = (await call('GET', entityPath(view.service.service, entity))).last_seq;
  } catch (error) {
    say(error);
  }
  if (view.entity !== entity || controller.signal.aborted) return;
  const from = Math.max(1, last - MAX_EVENT_ROWS + 1);
  follow(`${path}?from=${from}&follow=true`, (event) => {
    if (view.entity !== entity) return;
    const fresh = event.seq > last;
    appendEvent(event, fresh);
    if (fresh) loadStateSoon();
  }, controller.signal).catch((error) => {
    if (error.name !== 'AbortError') say(error);
  });
}

/** A CRDT entity has no events: with "live" on, its value after every change, on any host. */
function followValue(path) {
  if (!$('follow').checked) return;
  const controller = new AbortController();
  view.following = controller;
  const entity = view.entity;
  follow(`${path}?follow=true`, (event) => {
    if (view.entity === entity && 'state' in event) $('state').textContent = JSON.stringify(event.state, null, 2);
  }, controller.signal).catch((error) => {
    if (error.name !== 'AbortError') say(error);
  });
}

async function invoke(event) {
  event.preventDefault();
  const command = $('invoke-command').value.trim();
  const payload = $('invoke-payload').value.trim();
  const reply = $('invoke-reply');
  if (payload) {
    try {
      JSON.parse(payload);
    } catch (error) {
      reply.className = 'result bad';
      reply.textContent = `the payload is not JSON: ${error.message}`;
      return;
    }
  }
  $('invoke-send').disabled = true;
  try {
    const path = `${entityPath(view.service.service, view.entity)}/${encodeURIComponent(command)}`;
    const answer = await call('POST', path, { body: payload, contentType: 'application/json' });
    reply.className = 'result ok';
    reply.textContent = JSON.stringify(answer, null, 2);
    await loadState();
    if (!$('follow').checked) await loadEvents();
    refreshEntityRow();
  } catch (error) {
    reply.className = 'result bad';
    reply.textContent = error.message;
  } finally {
    $('invoke-send').disabled = false;
  }
}

/** Puts the open entity in the entity list once it has something stored. */
async function refreshEntityRow() {
  const body = $('entities').tBodies[0];
  if (!body.querySelector(`tr[data-entity="${CSS.escape(view.entity)}"]`)) {
    view.entitiesAfter = null;
    await loadEntities();
    for (const tr of body.rows) tr.classList.toggle('selected', tr.dataset.entity === view.entity);
  }
}

async function deploy(file) {
  const result = $('deploy-result');
  const name = $('deploy-name').value.trim() || file.name.replace(/\.wasm$/, '').replaceAll('_', '-');
  $('deploy-name').value = name;
  const subscribe = $('deploy-subscribe').value.trim();
  const query = subscribe ? `?subscribe=${encodeURIComponent(subscribe)}` : '';
  result.className = 'result';
  result.textContent = `deploying ${file.name} as ${name}…`;
  try {
    const body = await file.arrayBuffer();
    const deployed = await call('PUT', `/v1/services/${encodeURIComponent(name)}${query}`, { body, contentType: 'application/wasm' });
    result.className = 'result ok';
    result.textContent = `deployed ${deployed.service} version ${deployed.version} (${deployed.kind})`;
    await loadServices();
    await selectService(deployed.service);
  } catch (error) {
    result.className = 'result bad';
    result.textContent = error.status === 401 ? 'deploying needs the admin token: enter it above' : error.message;
  }
}

function wireDeploy() {
  const zone = $('dropzone');
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const file = event.dataTransfer.files[0];
    if (file) deploy(file);
  });
  $('deploy-file').addEventListener('change', (event) => {
    const file = event.target.files[0];
    if (file) deploy(file);
    event.target.value = '';
  });
  $('deploy-form').addEventListener('submit', (event) => event.preventDefault());
}

function init() {
  $('token').value = token();
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    setToken($('token').value.trim());
    say(null);
    loadServices();
  });
  wireDeploy();
  $('entity-form').addEventListener('submit', (event) => {
    event.preventDefault();
    openEntity($('entity-id').value.trim());
  });
  $('entities-more').addEventListener('click', loadEntities);
  $('invoke-form').addEventListener('submit', invoke);
  $('follow').addEventListener('change', () => {
    if (view.following) view.following.abort();
    view.following = null;
    if (view.entity) loadEvents();
  });
  health();
  setInterval(health, 5000);
  loadServices();
  setInterval(loadServices, 10000);
  live.start((error) => {
    if (error instanceof ApiError && error.status === 401) say(error);
  });
}

init();
