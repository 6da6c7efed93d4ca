// The console's calls to the HTTP API, with the token the user gave.

const TOKEN_KEY = 'wasmstate.token';

/** The token sent as `Authorization: Bearer`, kept in this tab only (gone when it closes). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** Remembers `value` as the token ('' forgets it). */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused request: its status and the server's error kind and message. */
export class ApiError extends Error {
  constructor(status, kind, message) {
    super(`${status} ${kind}: ${message}`);
    this.status = status;
    this.kind = kind;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

async function refusal(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    return new ApiError(response.status, error.kind, error.message);
  } catch {
    return new ApiError(response.status, 'error', text.trim() || response.statusText);
  }
}

/** Sends a request; answers the body (parsed JSON unless `text`). */
export async function call(method, path, { body, text = false, contentType } = {}) {
  const extra = contentType ? { 'Content-Type': contentType } : {};
  const response = await fetch(path, { method, body, headers: headers(extra) });
  if (!response.ok) throw await refusal(response);
  const raw = await response.text();
  if (text) return raw;
  return raw ? JSON.parse(raw) : null;
}

/** `/v1/services/{service}/entities/{id}` with both parts encoded. */
export function entityPath(service, entity) {
  return `/v1/services/${encodeURIComponent(service)}/entities/${encodeURIComponent(entity)}`;
}

/**
 * Follows a Server-Sent Events stream at `path` (fetch, not EventSource,
 * so the token goes in a header), calling `onEvent` with each event's
 * parsed data until `signal` aborts.
 */
export async function follow(path, onEvent, signal) {
  const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (!response.ok) throw await refusal(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending += value;
    let end;
    while ((end = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, end).replace(/\r$/, '');
      pending = pending.slice(end + 1);
      if (line === '') {
        if (data.length) onEvent(JSON.parse(data.join('\n')));
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
}
