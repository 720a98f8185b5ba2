// The stream wall (`/wall?token=…`, SPEC §3.4, seed 002): the live-streams
// registry — the keyed state stream `streams`, one document per
// `{platform}:{channel}` — as a grid of tiles that follows every change.
//
// One WebSocket, `SUBSCRIBE {streams: ["streams"], eventTypes:
// ["state.changed"], snapshot: true}`: the `STATE_SNAPSHOT` frame replaces
// what the page holds, then each `state.changed` event newer than the
// version held updates, adds or (deleted) removes one tile. After a dropped
// connection the SDK reconnects; the page then subscribes live again and
// takes a fresh snapshot (state needs no replay of the changes it missed,
// and a snapshot cannot fall behind retention). Every piece of document
// text goes in as text (see dom.js); a link is only made for http(s) URLs.

import { StreambusClient, pageToken } from '/sdk.js';
import { h, replace, ago } from './dom.js';

/** The state stream the registry lives in. */
const STREAM = 'streams';
/** Platforms in display order; anything else is shown as "other". */
const PLATFORMS = [
  ['twitch', 'Twitch'],
  ['youtube', 'YouTube'],
  ['kick', 'Kick'],
  ['facebook', 'Facebook'],
  ['tiktok', 'TikTok'],
  ['instagram', 'Instagram'],
  ['x', 'X'],
  ['other', 'Other'],
];
const LABEL = new Map(PLATFORMS);
const RANK = new Map(PLATFORMS.map(([id], i) => [id, i]));
/** How often "last seen N s ago" is refreshed. */
const TICK_MS = 1000;
/** Must match the `tile-flash` keyframes in wall.css (plus a margin). */
const FLASH_MS = 1300;

const params = new URLSearchParams(location.search);

/** What browser tests read; kept up to date. */
const view = {
  /** The socket is open. */
  connected: false,
  /** A snapshot arrived on the current connection (the grid is current). */
  live: false,
  snapshots: 0,
  changes: 0,
  filter: LABEL.has(params.get('platform')) ? params.get('platform') : 'all',
  order: params.get('order') === 'platform' ? 'platform' : 'recent',
  /** Keys of the tiles shown, in grid order. */
  keys: [],
  /** Documents held per platform. */
  counts: {},
};
window.__wall = view;

/** key → {key, version, value, platform, activity, el}. */
const docs = new Map();
/** key → version of its delete, so an older change cannot bring it back. */
const deleted = new Map();

const grid = document.getElementById('grid');
const empty = document.getElementById('empty');
const filters = document.getElementById('filters');
const conn = document.getElementById('conn');
const connText = document.getElementById('conn-text');

const bus = new StreambusClient({
  token: pageToken(),
  filter: { streams: [STREAM], eventTypes: ['state.changed'], snapshot: true },
});
window.__wallClient = bus;

// ---- connection ----

function showConn(state, text) {
  conn.classList.toggle('is-up', state === 'up');
  conn.classList.toggle('is-down', state === 'down');
  conn.classList.toggle('is-wait', state === 'wait');
  connText.textContent = text;
  document.body.classList.toggle('is-stale', state !== 'up');
}

bus.on('open', () => {
  view.connected = true;
  showConn('wait', 'loading…');
});
bus.on('close', () => {
  view.connected = false;
  view.live = false;
  // Resume with a fresh snapshot, not a replay from the last offset.
  bus.lastOffset = null;
  showConn('down', 'reconnecting…');
});
bus.on('ERROR', (frame) => {
  if (frame.code === 'unauthorized' || frame.code === 'forbidden') {
    showConn('down', `refused: ${frame.message || frame.code}`);
  }
});

// ---- the registry ----

bus.on('STATE_SNAPSHOT', (frame) => {
  if (frame.stream !== STREAM) return;
  const data = isObject(frame.data) ? frame.data : {};
  deleted.clear();
  for (const key of [...docs.keys()]) {
    if (!Object.hasOwn(data, key)) docs.delete(key);
  }
  for (const [key, d] of Object.entries(data)) {
    const version = Number(d && d.version) || 0;
    const held = docs.get(key);
    // The snapshot is the truth; only a tile whose version moved is rebuilt.
    if (!held || held.version !== version) put(key, version, d ? d.value : null, !!held);
  }
  view.snapshots += 1;
  view.live = true;
  showConn('up', 'live');
  render();
});

bus.on('event', (ev) => {
  if (ev.stream_id !== STREAM || ev.type !== 'state.changed') return;
  const d = ev.data || {};
  const version = Number(d.version);
  if (typeof d.key !== 'string' || !Number.isFinite(version)) return;
  const held = docs.get(d.key);
  if ((held && held.version >= version) || (deleted.get(d.key) ?? 0) >= version) return;
  view.changes += 1;
  if (d.deleted === true) {
    docs.delete(d.key);
    deleted.set(d.key, version);
  } else {
    // `value` is the whole document now; a notice without one carries the
    // merge patch from the version held.
    const value = Object.hasOwn(d, 'value') ? d.value : mergePatch(held ? held.value : null, d.patch);
    put(d.key, version, value, true);
  }
  render();
});

/** Holds `value` as `key` at `version`, with its tile. */
function put(key, version, value, changed) {
  const doc = { key, version, value: value ?? null };
  const v = fields(doc);
  doc.platform = v.platform;
  doc.activity = activityOf(v);
  doc.el = tile(doc, v);
  if (changed) flash(doc.el);
  docs.set(key, doc);
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 7396. */
function mergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  const out = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function text(v) {
  if (typeof v === 'string') return v.length > 0 ? v : null;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return null;
}

/** A document's fields as the tile shows them; platform and channel fall back to the key. */
function fields(doc) {
  const v = isObject(doc.value) ? doc.value : {};
  const colon = doc.key.indexOf(':');
  const keyPlatform = colon > 0 ? doc.key.slice(0, colon) : null;
  const keyChannel = colon > 0 ? doc.key.slice(colon + 1) : doc.key;
  const named = text(v.platform) || keyPlatform || 'other';
  const id = named.toLowerCase();
  const mentions = Number(v.mentions);
  return {
    platform: LABEL.has(id) ? id : 'other',
    platformName: named,
    channel: text(v.channel) || keyChannel || doc.key,
    title: text(v.title),
    url: text(v.url),
    videoId: text(v.video_id),
    seenBy: text(v.seen_by),
    firstSeen: text(v.first_seen),
    lastSeen: text(v.last_seen),
    mentions: v.mentions !== undefined && v.mentions !== null && Number.isFinite(mentions) ? mentions : null,
    live: v.live === true ? true : v.live === false ? false : null,
  };
}

/** ms of the latest activity known, for "newest first"; 0 when none. */
function activityOf(v) {
  const t = [v.lastSeen, v.firstSeen].map((s) => (s ? Date.parse(s) : NaN)).find(Number.isFinite);
  return t ?? 0;
}

/** The URL as an `href`, only for http and https; otherwise null (shown as text). */
function safeHref(url) {
  if (!url) return null;
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function seenText(at) {
  const s = ago(at);
  return s ? `last seen ${s}` : '';
}

function tile(doc, v) {
  const label = LABEL.get(v.platform);
  const href = safeHref(v.url);
  const seen = v.lastSeen || v.firstSeen;
  return h(
    'li',
    {
      class: ['tile', `p-${v.platform}`, v.live === false && 'is-offline'],
      dataset: { testid: 'wall-tile', key: doc.key, platform: v.platform, version: doc.version },
    },
    h(
      'div',
      { class: 'tile-head' },
      h(
        'span',
        { class: ['badge', 'tile-platform', `badge-${v.platform}`], dataset: { testid: 'wall-platform' } },
        // An unknown platform shows its own name, still as text.
        v.platform === 'other' && v.platformName.toLowerCase() !== 'other' ? v.platformName : label,
      ),
      v.live === true && h('span', { class: 'tile-live', dataset: { testid: 'wall-live-badge' } }, 'LIVE'),
      v.live === false && h('span', { class: 'tile-offline' }, 'offline'),
      v.mentions !== null &&
        h(
          'span',
          { class: 'tile-mentions', dataset: { testid: 'wall-mentions' }, title: 'mentions in chat' },
          `${v.mentions} ${v.mentions === 1 ? 'mention' : 'mentions'}`,
        ),
    ),
    h('h3', { class: 'tile-channel', title: v.channel, dataset: { testid: 'wall-channel' } }, v.channel),
    v.title && h('p', { class: 'tile-title', title: v.title, dataset: { testid: 'wall-title' } }, v.title),
    v.url &&
      (href
        ? h(
            'a',
            { class: 'tile-link', href, target: '_blank', rel: 'noopener noreferrer', dataset: { testid: 'wall-link' } },
            v.url,
          )
        : h('span', { class: 'tile-link is-text', dataset: { testid: 'wall-link' } }, v.url)),
    h(
      'div',
      { class: 'tile-meta' },
      seen && h('span', { class: 'tile-seen', dataset: { testid: 'wall-seen', at: seen } }, seenText(seen)),
      v.seenBy && h('span', { class: 'tile-by' }, `spotted by ${v.seenBy}`),
      v.videoId && v.platform === 'youtube' && h('span', { class: 'tile-video mono' }, v.videoId),
    ),
  );
}

/** Highlights a tile that changed, once. */
function flash(el) {
  el.classList.add('is-changed');
  // Moving the tile restarts a CSS animation: the class goes after one run.
  setTimeout(() => el.classList.remove('is-changed'), FLASH_MS);
}

// ---- header, filters, order ----

const filterButtons = new Map();
for (const [id, label] of [['all', 'All'], ...PLATFORMS]) {
  const count = h('span', { class: 'filter-count', dataset: { testid: `wall-count-${id}` } }, '0');
  const btn = h(
    'button',
    {
      type: 'button',
      class: ['filter', `filter-${id}`],
      dataset: { platform: id, testid: `wall-filter-${id}` },
      'aria-pressed': String(view.filter === id),
      on: { click: () => setFilter(id) },
    },
    id === 'all' ? null : h('span', { class: ['swatch', `badge-${id}`], 'aria-hidden': 'true' }),
    h('span', { class: 'filter-label' }, label),
    count,
  );
  filterButtons.set(id, { btn, count });
  filters.appendChild(btn);
}

const orderButtons = [...document.querySelectorAll('[data-order]')];
for (const btn of orderButtons) {
  btn.addEventListener('click', () => setOrder(btn.dataset.order));
}

function setFilter(id) {
  view.filter = id;
  keepInUrl('platform', id === 'all' ? null : id);
  render();
}

function setOrder(order) {
  view.order = order === 'platform' ? 'platform' : 'recent';
  keepInUrl('order', view.order === 'recent' ? null : view.order);
  render();
}

/** Reflects a choice in the address (token kept), so a reload keeps it. */
function keepInUrl(name, value) {
  const u = new URL(location.href);
  if (value) u.searchParams.set(name, value);
  else u.searchParams.delete(name);
  history.replaceState(null, '', u.pathname + u.search);
}

function compareRecent(a, b) {
  return b.activity - a.activity || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

function render() {
  const all = [...docs.values()];
  const counts = Object.fromEntries(PLATFORMS.map(([id]) => [id, 0]));
  let live = 0;
  for (const d of all) {
    counts[d.platform] += 1;
    if (isObject(d.value) && d.value.live === true) live += 1;
  }
  view.counts = counts;
  for (const [id, { btn, count }] of filterButtons) {
    const n = id === 'all' ? all.length : counts[id];
    count.textContent = String(n);
    btn.setAttribute('aria-pressed', String(view.filter === id));
    btn.classList.toggle('is-zero', n === 0);
  }
  for (const btn of orderButtons) btn.setAttribute('aria-pressed', String(btn.dataset.order === view.order));
  document.getElementById('total').textContent = String(all.length);
  document.getElementById('live-count').textContent = String(live);

  const shown = all.filter((d) => view.filter === 'all' || d.platform === view.filter);
  const items = [];
  if (view.order === 'platform') {
    shown.sort((a, b) => RANK.get(a.platform) - RANK.get(b.platform) || compareRecent(a, b));
    let group = null;
    for (const d of shown) {
      if (d.platform !== group) {
        group = d.platform;
        items.push(
          h(
            'li',
            { class: 'group-head', dataset: { testid: `wall-group-${group}` } },
            h('span', { class: ['swatch', `badge-${group}`], 'aria-hidden': 'true' }),
            `${LABEL.get(group)} · ${counts[group]}`,
          ),
        );
      }
      items.push(d.el);
    }
  } else {
    shown.sort(compareRecent);
    for (const d of shown) items.push(d.el);
  }
  replace(grid, items);
  view.keys = shown.map((d) => d.key);

  empty.hidden = shown.length > 0;
  if (shown.length === 0) {
    empty.textContent = !view.snapshots
      ? 'Waiting for the registry…'
      : all.length === 0
        ? 'No streams in the registry yet. They appear here as soon as chat mentions one.'
        : `No ${LABEL.get(view.filter)} streams right now.`;
  }
}

// ---- "last seen N s ago" ----

setInterval(() => {
  for (const el of grid.querySelectorAll('.tile-seen')) {
    const t = seenText(el.dataset.at);
    if (el.textContent !== t) el.textContent = t;
  }
}, TICK_MS);

render();

/** For the curious. */
window.__wallDocs = docs;
