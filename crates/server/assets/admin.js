// The operator panel (`/admin?token=…`): overlays and their queues, a live
// monitor, compose forms, the streams table and the rules. One WebSocket
// (subscribed to everything, with overlay updates) feeds the live parts;
// REST does the rest. Every piece of event text is rendered as text (see
// dom.js).

import { StreambusClient, pageToken } from '/sdk.js';
import { h, $ } from './dom.js';
import { initOverlays } from './admin-overlays.js';
import { initMonitor } from './admin-monitor.js';
import { initCompose } from './admin-compose.js';
import { initStreams } from './admin-streams.js';
import { initRules } from './admin-rules.js';

const TOAST_MS = 4500;
const MAX_TOASTS = 5;

const token = pageToken();
const bus = new StreambusClient({ token, filter: {}, overlayUpdates: true });

/** Shared by the sections. */
const ctx = {
  bus,
  token,
  /** Stream names seen anywhere (streams table, events). */
  streams: new Set(['default']),
  /** Called with the whole set whenever a new stream name shows up. */
  onStreams: [],
  addStreams(names) {
    let added = false;
    for (const n of names) {
      if (typeof n === 'string' && n && !ctx.streams.has(n)) {
        ctx.streams.add(n);
        added = true;
      }
    }
    if (added) for (const fn of ctx.onStreams) fn(ctx.streams);
  },
  /** A short message at the bottom right: kind `ok` or `error`. */
  notify(text, kind = 'ok') {
    const area = $('#toast-area');
    const el = h('div', { class: ['admin-toast', `is-${kind}`], role: kind === 'error' ? 'alert' : 'status' }, text);
    area.appendChild(el);
    while (area.children.length > MAX_TOASTS) area.firstElementChild.remove();
    setTimeout(() => el.remove(), kind === 'error' ? TOAST_MS * 2 : TOAST_MS);
  },
  /** A URL of this server keeping the page's token. */
  withToken(path) {
    if (!token) return path;
    const u = new URL(path, location.href);
    u.searchParams.set('token', token);
    return u.pathname + u.search;
  },
};

// The wall link keeps the token too.
$('[data-testid=nav-wall]').href = ctx.withToken('/wall');

// ---- connection indicator ----

const conn = $('#conn');
const connText = $('#conn-text');
function showConn(up, text) {
  conn.classList.toggle('is-up', up);
  conn.classList.toggle('is-down', !up);
  connText.textContent = text;
}
bus.on('open', () => showConn(true, 'live'));
bus.on('close', () => showConn(false, 'reconnecting…'));
bus.on('SUBSCRIBED', () => showConn(true, 'live'));

// ---- sections ----

const sections = {
  overlays: initOverlays(ctx),
  monitor: initMonitor(ctx),
  compose: initCompose(ctx),
  streams: initStreams(ctx),
  rules: initRules(ctx),
};

/** For browser tests and the curious. */
window.__admin = { bus, ctx, sections };
