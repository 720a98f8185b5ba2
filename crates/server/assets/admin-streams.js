// Streams section: GET /events/streams every 2 s (client counts, state,
// generator), with start / stop / pause / resume. Rows are updated in
// place so focus and a click in progress survive a refresh.

import { h, $ } from './dom.js';

const REFRESH_MS = 2000;
const ACTIONS = ['start', 'stop', 'pause', 'resume'];

export function initStreams(ctx) {
  const { bus } = ctx;
  const tbody = $('#streams-rows');
  const note = $('#streams-note');
  const result = $('#streams-result');
  /** stream name → {tr, cells, buttons}. */
  const rows = new Map();
  let inflight = false;

  function makeRow(name) {
    const cells = {
      state: h('span', { class: 'state' }),
      sub: h('span', { class: 'stream-sub' }),
      clients: h('td', { class: 'num mono', 'data-testid': 'stream-clients' }),
    };
    const buttons = {};
    for (const a of ACTIONS) {
      buttons[a] = h(
        'button',
        {
          type: 'button',
          class: ['btn', 'btn-small', a === 'stop' ? 'btn-danger' : 'btn-ghost'],
          dataset: { action: a, stream: name },
          'aria-label': `${a} ${name}`,
        },
        a[0].toUpperCase() + a.slice(1),
      );
    }
    const tr = h(
      'tr',
      { 'data-testid': `stream-${name}`, dataset: { stream: name } },
      h('th', { scope: 'row' }, h('span', { class: 'stream-name' }, h('span', { class: 'mono', text: name }), cells.state), cells.sub),
      cells.clients,
      h('td', { class: 'col-actions' }, h('div', { class: 'btn-row' }, ACTIONS.map((a) => buttons[a]))),
    );
    return { tr, cells, buttons };
  }

  function update(r, info) {
    const state = info.state || (info.active ? 'active' : 'stopped');
    const gen = info.generator;
    const genText = gen ? (gen.running ? (gen.paused ? 'generator paused' : 'generator running') : 'generator idle') : 'no generator';
    r.cells.state.className = `state state-${state}`;
    setText(r.cells.state, state);
    const events = info.events != null ? ` · ${info.events} events` : '';
    setText(r.cells.sub, `${genText}${events}`);
    setText(r.cells.clients, String(info.clients ?? 0));
    r.buttons.start.disabled = state === 'active' && !!(gen && gen.running);
    r.buttons.stop.disabled = state === 'stopped';
    r.buttons.pause.disabled = state !== 'active';
    r.buttons.resume.disabled = state !== 'paused';
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  async function refresh() {
    if (inflight) return;
    inflight = true;
    try {
      const body = await bus.api('/events/streams');
      const data = body?.data || {};
      const names = Object.keys(data).sort();
      for (const [name, r] of rows) {
        if (!(name in data)) {
          r.tr.remove();
          rows.delete(name);
        }
      }
      let prev = null;
      for (const name of names) {
        let r = rows.get(name);
        if (!r) {
          r = makeRow(name);
          rows.set(name, r);
        }
        update(r, data[name]);
        // Keep rows in name order without moving rows that are in place.
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== r.tr) tbody.insertBefore(r.tr, want);
        prev = r.tr;
      }
      ctx.addStreams(names);
      const all = body?.subscribers_all_streams ?? 0;
      note.textContent = `${names.length} stream${names.length === 1 ? '' : 's'} · ${all} subscribed to all or by glob`;
    } catch (e) {
      note.textContent = `Could not load streams: ${e.message}`;
    } finally {
      inflight = false;
    }
  }

  tbody.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const { action, stream } = btn.dataset;
    btn.disabled = true;
    try {
      const r = await bus.api(`/events/stream/${encodeURIComponent(stream)}/${action}`, { method: 'POST' });
      result.className = 'result is-ok';
      result.textContent = r?.message || `${action} ${stream}: done`;
    } catch (err) {
      result.className = 'result is-error';
      result.textContent = `${action} ${stream} failed: ${err.message}`;
    }
    await refresh();
  });

  refresh();
  setInterval(refresh, REFRESH_MS);
  return { refresh };
}
