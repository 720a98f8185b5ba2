// The overlay page (`/overlay?overlay=ID&token=…`): an OBS browser source
// that plays its playout queue one animated event at a time, shows alerts
// as toasts, and reports started / ended / cancelled (docs/OVERLAYS.md).
// All event text goes in as text (createTextNode), never as markup.

import { StreambusClient, pageToken } from '/sdk.js';
import { h, replace, priorityOf, isTest } from './dom.js';

/** Must match the keyframe durations in overlay.css. */
const ENTER_MS = 600;
const LEAVE_MS = 500;
const CANCEL_MS = 200;
const DEFAULT_DURATION_MS = 5000;
const ALERT_MS = 6000;
const MAX_TOASTS = 4;
const MAX_LOG = 200;
/** How many finished plays to remember, to answer a resend after a reconnect. */
const MAX_DONE = 64;

const params = new URLSearchParams(location.search);
const overlayId = params.get('overlay') || 'main';
const debug = params.get('debug') === '1';

const stage = document.getElementById('stage');
const toasts = document.getElementById('toasts');
const debugEl = document.getElementById('debug');

/** What browser tests read; kept up to date. */
const view = {
  overlayId,
  connected: false,
  visible: true,
  playing: null,
  log: [],
  alerts: [],
};
window.__overlay = view;

const bus = new StreambusClient({ token: pageToken(), overlayId });
window.__overlayClient = bus;

/** The play on screen: {eventId, play, event, el, timers, finished}. */
let current = null;
/** `${eventId}#${play}` → 'ended' | 'cancelled', for plays already finished here. */
const done = new Map();

// ---- connection ----

bus.on('open', () => {
  view.connected = true;
  renderDebug();
});
bus.on('close', () => {
  view.connected = false;
  renderDebug();
});
bus.on('SUBSCRIBED', () => {
  // The server assumes a new connection is visible.
  if (!view.visible) bus.visibility(false);
});
bus.on('EVENT_BROADCAST', onBroadcast);
bus.on('ANIMATION_CANCEL', (frame) => {
  if (current && current.eventId === frame.eventId) cancel(current);
});
bus.on('ERROR', (frame) => {
  if (debug) console.warn('streambus overlay: server said', frame.code, frame.message);
});

// ---- visibility: OBS source shown/hidden, and the page's own ----

let obsVisible = true;
let pageVisible = !document.hidden;
function updateVisible() {
  const v = obsVisible && pageVisible;
  if (v === view.visible) return;
  view.visible = v;
  bus.visibility(v);
  renderDebug();
}
if (window.obsstudio) {
  window.addEventListener('obsSourceVisibleChanged', (e) => {
    obsVisible = !!(e.detail && e.detail.visible);
    updateVisible();
  });
}
document.addEventListener('visibilitychange', () => {
  pageVisible = !document.hidden;
  updateVisible();
});
view.visible = obsVisible && pageVisible;

// ---- playout ----

function onBroadcast(frame) {
  const ev = frame.event || {};
  if (typeof frame.play !== 'number') {
    // An ordinary subscription delivery: alerts are shown at once; data
    // events are not drawn; animated events play only from the queue.
    if (ev.class === 'alert') showAlert(ev);
    return;
  }
  const play = frame.play;
  if (current && current.eventId === ev.id && current.play === play) return;
  const key = `${ev.id}#${play}`;
  if (done.has(key)) {
    // Finished here while the server did not hear it (a reconnect resends
    // what it thinks plays): repeat the report instead of playing again.
    if (done.get(key) === 'cancelled') bus.cancelled(ev.id, play);
    else bus.ended(ev.id, play);
    return;
  }
  if (current) {
    // The server moved on (it timed the current play out): give way.
    cut(current);
    finish(current, 'ended');
  }
  try {
    start(ev, play);
  } catch (e) {
    console.error('streambus overlay: cannot play', e);
    bus.failed(ev.id, play, String((e && e.message) || e));
  }
}

function start(ev, play) {
  const duration = Number(ev.duration_ms) > 0 ? Number(ev.duration_ms) : DEFAULT_DURATION_MS;
  const el = card(ev);
  const cur = { eventId: ev.id, play, event: ev, el, timers: [], finished: false };
  current = cur;
  stage.appendChild(el);
  view.playing = { eventId: ev.id, play, type: ev.type, message: ev.message ?? '' };
  bus.started(ev.id, play);
  record('started', ev.id, play);
  const bar = el.querySelector('.card-timer-bar');
  if (bar && bar.animate) {
    bar.animate([{ transform: 'scaleX(1)' }, { transform: 'scaleX(0)' }], {
      duration,
      easing: 'linear',
      fill: 'forwards',
    });
  }
  const hold = Math.max(0, duration - ENTER_MS - LEAVE_MS);
  cur.timers.push(setTimeout(() => leave(cur), ENTER_MS + hold));
  renderDebug();
}

function leave(cur) {
  if (cur.finished) return;
  cur.el.classList.add('leave');
  const end = () => {
    cur.el.remove();
    finish(cur, 'ended');
  };
  cur.el.addEventListener('animationend', (e) => {
    if (e.animationName === 'card-out') end();
  });
  // animationend may never come (a throttled or hidden page): don't wait on it.
  cur.timers.push(setTimeout(end, LEAVE_MS + 250));
}

function cancel(cur) {
  if (cur.finished) return;
  cut(cur);
  finish(cur, 'cancelled');
}

/** Fades the card out quickly and removes it. */
function cut(cur) {
  const el = cur.el;
  el.classList.add('cancel');
  setTimeout(() => el.remove(), CANCEL_MS + 50);
}

function finish(cur, kind) {
  if (cur.finished) return;
  cur.finished = true;
  for (const t of cur.timers) clearTimeout(t);
  if (current === cur) {
    current = null;
    view.playing = null;
  }
  if (kind === 'cancelled') bus.cancelled(cur.eventId, cur.play);
  else bus.ended(cur.eventId, cur.play);
  record(kind, cur.eventId, cur.play);
  done.set(`${cur.eventId}#${cur.play}`, kind);
  while (done.size > MAX_DONE) done.delete(done.keys().next().value);
  renderDebug();
}

function record(kind, eventId, play) {
  view.log.push({ kind, eventId, play, at: Date.now() });
  if (view.log.length > MAX_LOG) view.log.splice(0, view.log.length - MAX_LOG);
}

function humanType(type) {
  return String(type || '').replace(/[_:.-]+/g, ' ').trim();
}

function card(ev) {
  const prio = priorityOf(ev);
  return h(
    'section',
    {
      class: ['card', `prio-${prio}`, isTest(ev) && 'is-test'],
      'data-testid': 'overlay-card',
      dataset: { eventId: ev.id, priority: prio },
    },
    h('div', { class: 'card-accent' }),
    h(
      'div',
      { class: 'card-body' },
      h(
        'header',
        { class: 'card-head' },
        h('span', { class: 'card-type', text: humanType(ev.type) }),
        prio === 'high' || prio === 'critical' ? h('span', { class: 'card-prio', text: prio }) : null,
        isTest(ev) ? h('span', { class: 'badge-test', 'data-testid': 'test-badge', text: 'TEST' }) : null,
      ),
      h('p', { class: 'card-message', text: ev.message ?? '' }),
      detailLine(ev),
    ),
    h('div', { class: 'card-timer' }, h('div', { class: 'card-timer-bar' })),
  );
}

/** A short line from `data` (player, score, team …) when there is one. */
function detailLine(ev) {
  const d = ev.data;
  if (!d || typeof d !== 'object' || Array.isArray(d)) return null;
  const parts = [];
  for (const [k, v] of Object.entries(d)) {
    if (v === null || typeof v === 'object') continue;
    parts.push(`${k.replace(/_/g, ' ')}: ${v}`);
    if (parts.length === 3) break;
  }
  return parts.length ? h('p', { class: 'card-detail', text: parts.join('  ·  ') }) : null;
}

// ---- alerts ----

function showAlert(ev) {
  const level = ['info', 'warning', 'error'].includes(ev.level) ? ev.level : 'info';
  const entry = { eventId: ev.id, level, type: ev.type, message: ev.message ?? '', at: Date.now() };
  view.alerts.push(entry);
  if (view.alerts.length > MAX_LOG) view.alerts.splice(0, view.alerts.length - MAX_LOG);
  const el = h(
    'div',
    {
      class: ['toast', `level-${level}`, isTest(ev) && 'is-test'],
      role: 'status',
      'data-testid': 'overlay-alert',
      dataset: { eventId: ev.id, level },
    },
    h('span', { class: 'toast-level', text: level }),
    h('span', { class: 'toast-message', text: ev.message || humanType(ev.type) }),
    isTest(ev) ? h('span', { class: 'badge-test', text: 'TEST' }) : null,
  );
  toasts.appendChild(el);
  while (toasts.children.length > MAX_TOASTS) toasts.firstElementChild.remove();
  setTimeout(() => {
    el.classList.add('leave');
    setTimeout(() => el.remove(), LEAVE_MS + 50);
  }, ALERT_MS);
}

// ---- debug indicator ----

function renderDebug() {
  if (!debug) return;
  debugEl.hidden = false;
  debugEl.className = `debug ${view.connected ? 'is-up' : 'is-down'}`;
  const playing = view.playing ? `playing ${view.playing.type}` : 'idle';
  replace(
    debugEl,
    h('span', { class: 'debug-dot' }),
    `${overlayId} · ${view.connected ? 'connected' : 'reconnecting…'} · ${view.visible ? 'visible' : 'hidden'} · ${playing}`,
  );
}
renderDebug();
