// Live monitor: every event the admin connection receives (it subscribes to
// everything), newest first, filtered here by stream, type glob and class.
// `_overlays` (the queues' own log) is hidden unless asked for.

import { h, replace, $, clock, globToRegExp, priorityOf, isTest } from './dom.js';

const KEEP = 1000;
const SHOWN = 300;
const HISTORY = 100;
const INTERNAL_STREAM = '_overlays';

export function initMonitor(ctx) {
  const { bus } = ctx;
  const rows = $('#monitor-rows');
  const empty = $('#monitor-empty');
  const count = $('#monitor-count');
  const streamSel = $('#mf-stream');
  const typeIn = $('#mf-type');
  const classSel = $('#mf-class');
  const internal = $('#mf-internal');
  const pauseBtn = $('#monitor-pause');
  const detail = $('#monitor-detail');
  const json = $('#monitor-json');

  /** Newest first, in arrival order. */
  let events = [];
  const seen = new Set();
  let paused = false;
  let missed = 0;
  let total = 0;
  let match = () => true;
  let selected = null;

  function compile() {
    const stream = streamSel.value;
    const cls = classSel.value;
    const showInternal = internal.checked;
    let typeRe = null;
    const glob = typeIn.value.trim();
    if (glob) typeRe = globToRegExp(glob);
    match = (ev) =>
      (showInternal || ev.stream_id !== INTERNAL_STREAM) &&
      (!stream || ev.stream_id === stream) &&
      (!cls || ev.class === cls) &&
      (!typeRe || typeRe.test(String(ev.type)));
  }

  function row(ev) {
    const prio = priorityOf(ev);
    const cls = ev.class || 'data';
    const tr = h(
      'tr',
      {
        tabindex: '0',
        class: ['ev', `class-${cls}`, selected === ev.id && 'is-selected', ev.stream_id === INTERNAL_STREAM && 'is-internal'],
        dataset: { offset: ev.offset, eventId: ev.id },
        'aria-label': `Event ${ev.type} on ${ev.stream_id}`,
      },
      h('td', { class: 'col-time mono', title: ev.time || '', text: clock(ev.time || (ev.timestamp || 0) * 1000) }),
      h('td', { class: 'col-offset mono', text: ev.offset ?? '' }),
      h('td', { class: 'col-stream', text: ev.stream_id || '' }),
      h('td', {}, h('span', { class: ['cls', `cls-${cls}`], text: cls })),
      h('td', { class: 'col-type mono', text: ev.type || '' }),
      h(
        'td',
        { class: 'col-message' },
        cls === 'alert' && ev.level ? h('span', { class: ['lvl', `lvl-${ev.level}`], text: ev.level }) : null,
        prio === 'high' || prio === 'critical' ? h('span', { class: ['prio', `prio-${prio}`], text: prio }) : null,
        isTest(ev) ? h('span', { class: 'badge badge-test', text: 'TEST' }) : null,
        h('span', { class: 'msg', text: ev.message || '' }),
      ),
    );
    return tr;
  }

  function render() {
    const shown = [];
    for (const ev of events) {
      if (shown.length >= SHOWN) break;
      if (match(ev)) shown.push(ev);
    }
    replace(rows, ...shown.map(row));
    empty.hidden = shown.length > 0;
    empty.textContent = events.length ? 'No event matches the filters.' : 'Waiting for events…';
    missed = 0;
    status();
  }

  function status() {
    count.textContent = `${total} received${paused && missed ? ` · ${missed} new while paused` : ''}`;
    pauseBtn.textContent = paused ? `Resume scrolling${missed ? ` (${missed})` : ''}` : 'Pause scrolling';
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.classList.toggle('is-active', paused);
  }

  function add(ev, { live }) {
    if (!ev || seen.has(ev.id)) return;
    seen.add(ev.id);
    total += 1;
    ctx.addStreams([ev.stream_id]);
    if (live) events.unshift(ev);
    else events.push(ev);
    if (events.length > KEEP) {
      for (const old of events.splice(KEEP)) seen.delete(old.id);
    }
    if (!match(ev)) {
      status();
      return;
    }
    if (paused) {
      missed += 1;
      status();
      return;
    }
    if (live) {
      rows.prepend(row(ev));
      while (rows.children.length > SHOWN) rows.lastElementChild.remove();
    } else if (rows.children.length < SHOWN) {
      rows.appendChild(row(ev));
    }
    empty.hidden = true;
    status();
  }

  bus.on('event', (ev, frame) => {
    if (frame.play !== undefined) return;
    add(ev, { live: true });
  });

  async function loadRecent() {
    try {
      const body = await bus.api(`/events?limit=${HISTORY}`);
      for (const ev of body?.data || []) add(ev, { live: false });
    } catch (e) {
      ctx.notify(`Could not load recent events: ${e.message}`, 'error');
    }
  }

  // ---- controls ----

  for (const el of [streamSel, classSel, internal]) {
    el.addEventListener('change', () => {
      compile();
      render();
    });
  }
  typeIn.addEventListener('input', () => {
    compile();
    render();
  });
  $('#monitor-filters').addEventListener('submit', (e) => e.preventDefault());
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    if (!paused) render();
    else status();
  });
  $('#monitor-clear').addEventListener('click', () => {
    events = [];
    seen.clear();
    total = 0;
    render();
  });

  function select(tr) {
    if (!tr) return;
    const ev = events.find((e) => e.id === tr.dataset.eventId);
    if (!ev) return;
    selected = ev.id;
    for (const r of rows.querySelectorAll('tr.is-selected')) r.classList.remove('is-selected');
    tr.classList.add('is-selected');
    json.textContent = JSON.stringify(ev, null, 2);
    detail.open = true;
  }
  rows.addEventListener('click', (e) => select(e.target.closest('tr')));
  rows.addEventListener('keydown', (e) => {
    const tr = e.target.closest('tr');
    if (!tr) return;
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      select(tr);
    } else if (e.key === 'ArrowDown' && tr.nextElementSibling) {
      e.preventDefault();
      tr.nextElementSibling.focus();
    } else if (e.key === 'ArrowUp' && tr.previousElementSibling) {
      e.preventDefault();
      tr.previousElementSibling.focus();
    }
  });

  function fillStreams(names) {
    const current = streamSel.value;
    const opts = [h('option', { value: '' }, 'all streams')];
    for (const n of [...names].sort()) {
      if (n === INTERNAL_STREAM) continue;
      opts.push(h('option', { value: n, selected: n === current }, n));
    }
    replace(streamSel, ...opts);
    streamSel.value = current;
  }
  ctx.onStreams.push(fillStreams);
  fillStreams(ctx.streams);

  compile();
  render();
  loadRecent();
  return { render, get events() { return events; } };
}
