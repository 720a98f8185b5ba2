// Overlays section: one card per overlay (GET /overlays), replaced whenever
// an OVERLAY_STATE frame arrives; Cancel / Replay / Skip / Pause / Resume /
// Clear through the REST routes of docs/OVERLAYS.md.

import { h, replace, $, clock } from './dom.js';

const REFRESH_MS = 5000;
const TICK_MS = 250;
const HISTORY_SHOWN = 8;
const FINAL = new Set(['completed', 'cancelled', 'failed', 'expired']);

export function initOverlays(ctx) {
  const { bus } = ctx;
  const list = $('#overlay-list');
  const note = $('#overlays-note');
  /** overlay_id → the last Overlay document. */
  const overlays = new Map();
  /** null until the first answer; false when the server has no overlay API. */
  let available = null;
  let loadError = null;

  async function load() {
    try {
      const body = await bus.api('/overlays');
      const fresh = Array.isArray(body?.overlays) ? body.overlays : [];
      available = true;
      loadError = null;
      overlays.clear();
      for (const o of fresh) if (o && o.overlay_id) overlays.set(o.overlay_id, o);
    } catch (e) {
      if (e.status === 404) available = false;
      else loadError = e.message;
    }
    renderAll();
  }

  bus.on('OVERLAY_STATE', (frame) => {
    const o = frame.overlay;
    if (!o || !o.overlay_id) return;
    available = true;
    const isNew = !overlays.has(o.overlay_id);
    overlays.set(o.overlay_id, o);
    if (isNew) renderAll();
    else renderCard(o);
  });
  bus.on('open', load);

  // ---- rendering ----

  /** What was last drawn, so an unchanged refresh redraws nothing (a click in progress survives). */
  let drawn = null;

  function renderAll() {
    const ids = [...overlays.keys()].sort();
    const signature = JSON.stringify([available, loadError, ids.map((id) => overlays.get(id))]);
    if (signature === drawn) return;
    drawn = signature;
    const focus = rememberFocus();
    if (ids.length === 0) {
      const why =
        available === false
          ? 'This server does not offer the overlay queue API yet.'
          : loadError
            ? `Could not load overlays: ${loadError}`
            : 'An overlay appears here once an /overlay page connects or a subscription is stored for it.';
      replace(
        list,
        h(
          'div',
          { class: 'empty empty-overlays', 'data-testid': 'overlays-empty' },
          h('strong', { text: available === null && !loadError ? 'Loading overlays…' : 'No overlays yet' }),
          h('span', { text: why }),
          h(
            'span',
            {},
            'Open ',
            h('a', { href: ctx.withToken('/overlay?overlay=main&debug=1'), target: '_blank', rel: 'noopener' }, '/overlay?overlay=main'),
            ' to create one.',
          ),
        ),
      );
    } else {
      replace(list, ...ids.map((id) => card(overlays.get(id))));
    }
    note.textContent = ids.length ? `${ids.length} overlay${ids.length === 1 ? '' : 's'}` : '';
    restoreFocus(focus);
    tick();
  }

  function renderCard(o) {
    const old = list.querySelector(`[data-overlay-card="${CSS.escape(o.overlay_id)}"]`);
    if (!old) return renderAll();
    drawn = null;
    const focus = rememberFocus();
    old.replaceWith(card(o));
    restoreFocus(focus);
    tick();
  }

  function card(o) {
    const id = o.overlay_id;
    const np = o.now_playing || null;
    const queue = Array.isArray(o.queue) ? o.queue : [];
    const history = Array.isArray(o.history) ? o.history : [];
    return h(
      'article',
      {
        class: ['ov-card', o.connected ? 'is-online' : 'is-offline', o.paused && 'is-paused'],
        'data-testid': `overlay-${id}`,
        dataset: { overlayCard: id },
        'aria-label': `Overlay ${id}`,
      },
      h(
        'header',
        { class: 'ov-head' },
        h('h3', { class: 'ov-name', text: id }),
        h(
          'span',
          { class: ['pill', o.connected ? 'pill-ok' : 'pill-off'], 'data-testid': 'overlay-connection' },
          h('span', { class: 'dot', 'aria-hidden': 'true' }),
          o.connected ? `online${o.connections > 1 ? ` ×${o.connections}` : ''}` : 'offline',
        ),
        o.connected
          ? h('span', {
              class: ['pill', o.visible === false ? 'pill-warn' : 'pill-quiet'],
              'data-testid': 'overlay-visibility',
              text: o.visible === false ? 'hidden' : 'visible',
              title: o.visible === false ? 'The overlay reports it is not visible (OBS source hidden, or its page in the background)' : null,
            })
          : null,
        o.paused ? h('span', { class: 'badge badge-paused', 'data-testid': 'paused-badge', text: 'PAUSED' }) : null,
        h('span', { class: 'ov-spacer' }),
        h(
          'a',
          { class: 'ov-open', href: ctx.withToken(`/overlay?overlay=${encodeURIComponent(id)}&debug=1`), target: '_blank', rel: 'noopener' },
          'Preview',
        ),
      ),
      nowPlaying(id, np),
      h(
        'div',
        { class: 'ov-controls', role: 'group', 'aria-label': `Controls for ${id}` },
        button('Skip', { action: 'skip', overlay: id }, { disabled: !np, cls: 'btn-warn', title: 'Cancel what plays now' }),
        o.paused
          ? button('Resume', { action: 'resume', overlay: id }, { cls: 'btn-ok' })
          : button('Pause', { action: 'pause', overlay: id }, { title: 'Hold the queue; what plays finishes' }),
        button(`Clear queue${queue.length ? ` (${queue.length})` : ''}`, { action: 'clear', overlay: id }, { disabled: !queue.length, cls: 'btn-danger' }),
      ),
      h(
        'div',
        { class: 'ov-lists' },
        h(
          'section',
          { class: 'ov-queue', 'aria-label': `Queue of ${id}` },
          h('h4', {}, 'Queue ', h('span', { class: 'count', text: String(queue.length) })),
          queue.length
            ? h('ol', { class: 'items', 'data-testid': 'overlay-queue' }, queue.map((it) => queueItem(id, it)))
            : h('p', { class: 'muted small', text: 'Queue is empty' }),
        ),
        h(
          'section',
          { class: 'ov-history', 'aria-label': `History of ${id}` },
          h('h4', { text: 'Recent' }),
          history.length
            ? h('ol', { class: 'items', 'data-testid': 'overlay-history' }, history.slice(0, HISTORY_SHOWN).map((it) => historyItem(id, it)))
            : h('p', { class: 'muted small', text: 'Nothing played yet' }),
        ),
      ),
    );
  }

  function nowPlaying(id, np) {
    if (!np) {
      return h('div', { class: 'ov-now is-idle', 'data-testid': 'now-playing' }, h('span', { class: 'ov-now-label', text: 'Now playing' }), h('span', { class: 'ov-idle', text: 'Idle' }));
    }
    const prio = np.priority || 'normal';
    const duration = Number(np.duration_ms) || 5000;
    const started = np.started_at ? Date.parse(np.started_at) : NaN;
    return h(
      'div',
      {
        class: ['ov-now', `prio-${prio}`],
        'data-testid': 'now-playing',
        dataset: { eventId: np.event_id, play: np.play ?? 0 },
      },
      h(
        'div',
        { class: 'ov-now-top' },
        h('span', { class: 'ov-now-label', text: 'Now playing' }),
        h('span', { class: ['prio', `prio-${prio}`], text: prio }),
        np.test ? testBadge() : null,
        np.play > 0 ? h('span', { class: 'badge badge-replay', text: `replay ${np.play}` }) : null,
        h('span', { class: 'ov-spacer' }),
        np.cancelable !== false
          ? button('Cancel', { action: 'cancel', eventId: np.event_id, overlay: id }, { cls: 'btn-danger btn-small' })
          : null,
      ),
      h('div', { class: 'ov-now-type', text: np.type || '' }),
      h('div', { class: 'ov-now-message', text: np.message || '' }),
      h(
        'div',
        { class: 'ov-progress' },
        h('progress', {
          max: String(duration),
          value: '0',
          class: 'progress',
          dataset: { started: Number.isFinite(started) ? String(started) : '', duration: String(duration) },
          'aria-label': 'Progress',
        }),
        h('span', { class: 'ov-remaining mono', text: Number.isFinite(started) ? '' : 'starting…' }),
      ),
    );
  }

  function queueItem(id, it) {
    const prio = it.priority || 'normal';
    return h(
      'li',
      { class: ['item', `prio-${prio}`], dataset: { eventId: it.event_id } },
      h('span', { class: ['prio-dot', `prio-${prio}`], title: prio, 'aria-label': `priority ${prio}` }),
      h('span', { class: 'item-type', text: it.type || '' }),
      h('span', { class: 'item-message', text: it.message || '' }),
      it.test ? testBadge() : null,
      it.cancelable !== false ? button('Cancel', { action: 'cancel', eventId: it.event_id, overlay: id }, { cls: 'btn-small btn-ghost' }) : null,
    );
  }

  function historyItem(id, it) {
    const status = it.status || 'completed';
    const label = it.reason ? `${status} · ${it.reason}` : status;
    return h(
      'li',
      { class: 'item', dataset: { eventId: it.event_id, status } },
      h('span', { class: ['status', `status-${status}`], text: label }),
      h('span', { class: 'item-type', text: it.type || '' }),
      h('span', { class: 'item-message', text: it.message || '' }),
      it.test ? testBadge() : null,
      it.ended_at ? h('time', { class: 'item-time mono', datetime: it.ended_at, title: it.ended_at, text: clock(it.ended_at) }) : null,
      it.replayable !== false && FINAL.has(status)
        ? button('Replay', { action: 'replay', eventId: it.event_id, overlay: id }, { cls: 'btn-small btn-ghost' })
        : null,
    );
  }

  function testBadge() {
    return h('span', { class: 'badge badge-test', 'data-testid': 'test-badge', text: 'TEST' });
  }

  function button(label, data, { disabled = false, cls = '', title } = {}) {
    return h('button', { type: 'button', class: ['btn', cls], dataset: data, disabled, title }, label);
  }

  // ---- progress bars ----

  function tick() {
    const now = Date.now();
    for (const p of list.querySelectorAll('progress[data-duration]')) {
      const started = Number(p.dataset.started);
      const duration = Number(p.dataset.duration);
      if (!started) continue;
      const elapsed = Math.min(duration, Math.max(0, now - started));
      p.value = elapsed;
      const rest = p.parentElement.querySelector('.ov-remaining');
      if (rest) rest.textContent = `${((duration - elapsed) / 1000).toFixed(1)} s`;
    }
  }
  setInterval(tick, TICK_MS);

  // ---- actions ----

  list.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const { action, overlay, eventId } = btn.dataset;
    btn.disabled = true;
    try {
      switch (action) {
        case 'cancel':
          await bus.api(`/events/${encodeURIComponent(eventId)}/cancel`, { method: 'PUT', body: { target_overlay: overlay } });
          ctx.notify(`Cancelled on ${overlay}`);
          break;
        case 'replay':
          await bus.api(`/events/${encodeURIComponent(eventId)}/replay`, { method: 'POST', body: { target_overlay: overlay } });
          ctx.notify(`Queued again on ${overlay}`);
          break;
        case 'skip':
        case 'pause':
        case 'resume':
        case 'clear': {
          const r = await bus.api(`/overlays/${encodeURIComponent(overlay)}/${action}`, { method: 'POST', body: {} });
          const done = { skip: 'Skipped', pause: 'Paused', resume: 'Resumed', clear: 'Cleared' }[action];
          const n = action === 'clear' && r && Number.isFinite(r.cleared) ? ` (${r.cleared})` : '';
          ctx.notify(`${done} ${overlay}${n}`);
          if (r && r.overlay && r.overlay.overlay_id) overlays.set(r.overlay.overlay_id, r.overlay);
          break;
        }
        default:
          return;
      }
    } catch (err) {
      ctx.notify(`${action} failed: ${err.message}`, 'error');
    } finally {
      btn.disabled = false;
    }
    load();
  });

  $('#overlays-refresh').addEventListener('click', load);

  // ---- focus survives re-rendering ----

  function rememberFocus() {
    const a = document.activeElement;
    if (!a || !list.contains(a) || !a.dataset) return null;
    return { ...a.dataset };
  }

  function restoreFocus(f) {
    if (!f || !f.action) return;
    const sel = Object.entries(f)
      .map(([k, v]) => `[data-${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}="${CSS.escape(v)}"]`)
      .join('');
    const el = list.querySelector(`button${sel}`);
    if (el) el.focus({ preventScroll: true });
  }

  load();
  setInterval(load, REFRESH_MS);
  return { load, overlays };
}
