// Rules section (docs/RULES.md): GET /rules every 5 s and after each
// change — what each rule detects, where it comes from, whether it is
// enabled (a switch that PUTs the definition back with `enabled` flipped;
// configured rules cannot be changed over the API), how often it fired and
// its last error — and a Test panel per rule that POSTs a sample event to
// /rules/{id}/test, which publishes and remembers nothing. Rows are updated
// in place so focus, an open Test panel and an edited sample survive a
// refresh.

import { h, replace, $, ago } from './dom.js';

const REFRESH_MS = 5000;
const TICK_MS = 1000;
const COLUMNS = 8;
const MAX_SAMPLE_ROWS = 16;

/** The event type each kind emits when `emit.type` names none. */
const DEFAULT_TYPE = {
  high_score: 'high_score',
  win_streak: 'win_streak',
  threshold: 'threshold.crossed',
  value_change: 'value.changed',
  links: 'link.detected',
};

const CONFIG_TIP = 'Defined in the server configuration ([[rules]]): change it there; the API refuses to (409)';

export function initRules(ctx) {
  const { bus } = ctx;
  const table = $('#rules-table');
  const wrap = $('#rules-wrap');
  const note = $('#rules-note');
  const empty = $('#rules-empty');
  /** rule id → {group, rule, cells, …}. */
  const rows = new Map();
  let inflight = false;
  let again = false;
  let loaded = false;

  // ---- one rule ----

  function makeRow(id) {
    const testId = `rule-test-${id}`;
    const cells = {
      description: h('span', { class: 'rule-desc', 'data-testid': 'rule-description' }),
      when: h('span', { class: 'rule-sub', 'data-testid': 'rule-when' }),
      kind: h('span', { class: 'rule-kind', 'data-testid': 'rule-kind' }),
      summary: h('span', { class: 'rule-summary', 'data-testid': 'rule-summary' }),
      emits: h('span', { class: 'rule-sub', 'data-testid': 'rule-emits' }),
      origin: h('span', { class: 'badge', 'data-testid': 'rule-origin' }),
      fired: h('span', { class: 'rule-count mono', 'data-testid': 'rule-fired' }),
      matched: h('span', { class: 'rule-sub', 'data-testid': 'rule-matched' }),
      last: h('time', { class: 'mono', 'data-testid': 'rule-last-fired' }),
      error: h('span', { 'data-testid': 'rule-error' }),
      switchText: h('span', { class: 'switch-text', 'aria-hidden': 'true' }),
    };
    const toggle = h('input', {
      type: 'checkbox',
      role: 'switch',
      'data-testid': 'rule-enabled',
      'aria-label': `Rule ${id} enabled`,
      on: { change: (e) => setEnabled(id, e.currentTarget) },
    });
    const switchLabel = h('label', { class: 'switch' }, toggle, cells.switchText);
    const input = h('textarea', {
      class: 'mono',
      rows: '8',
      spellcheck: 'false',
      autocomplete: 'off',
      'data-testid': 'rule-test-input',
      'aria-label': `Sample event for rule ${id} (JSON)`,
      on: {
        keydown: (e) => {
          // Ctrl/Cmd+Enter runs the test without leaving the sample.
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            runTest(id);
          }
        },
      },
    });
    const result = h('output', {
      class: 'result rule-result',
      'data-testid': 'rule-test-result',
      'aria-live': 'polite',
    });
    const run = h(
      'button',
      { type: 'button', class: 'btn btn-primary', 'data-testid': 'rule-test-run', on: { click: () => runTest(id) } },
      'Run test',
    );
    const reset = h(
      'button',
      {
        type: 'button',
        class: 'btn btn-ghost',
        'data-testid': 'rule-test-reset',
        on: {
          click: () => {
            const r = rows.get(id);
            if (r) fillSample(r, true);
          },
        },
      },
      'Reset sample',
    );
    const testRow = h(
      'tr',
      { class: 'rule-test-row', id: testId, 'data-testid': 'rule-test', hidden: true },
      h(
        'td',
        { colspan: String(COLUMNS) },
        h(
          'div',
          { class: 'rule-test' },
          h('label', { class: 'field' }, h('span', { text: 'Sample event (JSON) — nothing is published' }), input),
          h(
            'div',
            { class: 'rule-test-side' },
            h('div', { class: 'btn-row' }, run, reset),
            result,
          ),
        ),
      ),
    );
    const testButton = h(
      'button',
      {
        type: 'button',
        class: 'btn btn-small btn-ghost',
        'data-testid': 'rule-test-toggle',
        'aria-expanded': 'false',
        'aria-controls': testId,
        'aria-label': `Test rule ${id}`,
        on: {
          click: () => {
            const open = testRow.hidden;
            testRow.hidden = !open;
            testButton.setAttribute('aria-expanded', String(open));
            testButton.classList.toggle('is-active', open);
            if (open) input.focus();
          },
        },
      },
      'Test',
    );
    const main = h(
      'tr',
      { class: 'rule-main' },
      h(
        'th',
        { scope: 'row' },
        h('span', { class: 'rule-id mono', 'data-testid': 'rule-id', text: id }),
        cells.description,
        cells.when,
      ),
      h('td', { class: 'rule-detects' }, h('span', { class: 'rule-detect-line' }, cells.kind, cells.summary), cells.emits),
      h('td', {}, cells.origin),
      h('td', {}, switchLabel),
      h('td', { class: 'num' }, cells.fired, cells.matched),
      h('td', { class: 'rule-last' }, cells.last),
      h('td', { class: 'rule-error-cell' }, cells.error),
      h('td', { class: 'col-actions' }, testButton),
    );
    // One <tbody> per rule keeps its row and its Test panel together.
    const group = h('tbody', { class: 'rule', 'data-testid': 'rule-row', dataset: { id } }, main, testRow);
    return { id, group, cells, toggle, switchLabel, input, result, run, busy: false, sample: null, rule: null };
  }

  function update(r, rule) {
    r.rule = rule;
    const c = r.cells;
    const isConfig = rule.origin === 'config';
    const stats = rule.stats || {};
    setText(c.description, rule.description || '');
    c.description.hidden = !rule.description;
    setText(c.when, `when ${whenSummary(rule.when)}`);
    const kind = (rule.detect && rule.detect.kind) || '?';
    setText(c.kind, kind);
    setText(c.summary, detectSummary(rule));
    setText(c.emits, emitsSummary(rule));
    setText(c.origin, isConfig ? 'config' : 'api');
    c.origin.className = `badge badge-origin origin-${isConfig ? 'config' : 'api'}`;
    c.origin.title = isConfig ? 'From the server configuration' : 'Made over the API';
    r.group.classList.toggle('is-disabled', rule.enabled === false);
    if (!r.busy) {
      r.toggle.checked = rule.enabled !== false;
      r.toggle.disabled = isConfig;
    }
    setText(c.switchText, r.toggle.checked ? 'on' : 'off');
    // A disabled control gets no pointer events in every browser: the
    // label carries the tooltip too.
    const tip = isConfig ? CONFIG_TIP : null;
    for (const el of [r.toggle, r.switchLabel]) {
      if (tip) el.title = tip;
      else el.removeAttribute('title');
    }
    setText(c.fired, String(stats.fired ?? 0));
    setText(c.matched, `${stats.matched ?? 0} matched`);
    c.last.dataset.at = stats.last_fired_at || '';
    if (stats.last_fired_at) {
      c.last.setAttribute('datetime', stats.last_fired_at);
      c.last.title = stats.last_fired_at;
    } else {
      c.last.removeAttribute('datetime');
      c.last.removeAttribute('title');
    }
    setText(c.last, lastFired(stats.last_fired_at));
    if (stats.last_error) {
      c.error.className = 'rule-error';
      c.error.setAttribute('role', 'status');
      setText(c.error, stats.last_error);
    } else {
      c.error.className = 'muted';
      c.error.removeAttribute('role');
      setText(c.error, '—');
    }
    fillSample(r, false);
  }

  /** Prefills the sample; again when the rule changed and the text was not edited (or when `force`). */
  function fillSample(r, force) {
    const text = JSON.stringify(sampleFor(r.rule), null, 2);
    if (force || r.sample === null || (r.input.value === r.sample && text !== r.sample)) {
      r.input.value = text;
      r.input.rows = Math.min(MAX_SAMPLE_ROWS, text.split('\n').length + 1);
    }
    r.sample = text;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function lastFired(at) {
    return at ? ago(at) : 'never';
  }

  // ---- loading ----

  async function refresh() {
    if (inflight) {
      // A change happened while an older answer is on its way: read again.
      again = true;
      return;
    }
    inflight = true;
    try {
      const body = await bus.api('/rules');
      const all = (Array.isArray(body?.data) ? body.data : []).filter((x) => x && typeof x.id === 'string');
      all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const ids = new Set(all.map((x) => x.id));
      for (const [id, r] of rows) {
        if (!ids.has(id)) {
          r.group.remove();
          rows.delete(id);
        }
      }
      let prev = null;
      for (const rule of all) {
        let r = rows.get(rule.id);
        if (!r) {
          r = makeRow(rule.id);
          rows.set(rule.id, r);
        }
        update(r, rule);
        // Keep the groups in id order without moving those in place.
        const want = prev ? prev.nextElementSibling : table.tBodies[0] || null;
        if (want !== r.group) table.insertBefore(r.group, want);
        prev = r.group;
      }
      if (!empty.querySelector('code')) replace(empty, 'No rules yet — see ', h('code', { text: 'docs/RULES.md' }));
      loaded = true;
      empty.hidden = all.length > 0;
      wrap.hidden = all.length === 0;
      const on = all.filter((x) => x.enabled !== false).length;
      note.textContent = all.length ? `${all.length} rule${all.length === 1 ? '' : 's'} · ${on} enabled` : '';
    } catch (e) {
      note.textContent = `Could not load rules: ${e.message}`;
      if (!loaded) empty.textContent = 'Could not load rules.';
    } finally {
      inflight = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  // ---- enable / disable ----

  async function setEnabled(id, input) {
    const r = rows.get(id);
    if (!r || !r.rule) return;
    const want = input.checked;
    r.busy = true;
    input.disabled = true;
    setText(r.cells.switchText, want ? 'on' : 'off');
    try {
      await bus.api(`/rules/${encodeURIComponent(id)}`, { method: 'PUT', body: { ...definition(r.rule), enabled: want } });
      ctx.notify(`Rule ${id} ${want ? 'enabled' : 'disabled'}`);
    } catch (err) {
      input.checked = !want;
      setText(r.cells.switchText, input.checked ? 'on' : 'off');
      ctx.notify(`Could not ${want ? 'enable' : 'disable'} ${id}: ${err.message}`, 'error');
    } finally {
      r.busy = false;
      input.disabled = r.rule.origin === 'config';
    }
    await refresh();
  }

  /** A listed rule as PUT takes it: without the server's `origin`, `stats` and `since`. */
  function definition(rule) {
    const { origin: _origin, stats: _stats, since: _since, ...def } = rule;
    return def;
  }

  // ---- test ----

  async function runTest(id) {
    const r = rows.get(id);
    if (!r) return;
    let sample;
    try {
      sample = JSON.parse(r.input.value);
    } catch (e) {
      return showResult(r, `Not valid JSON: ${e.message}`, false);
    }
    if (sample === null || typeof sample !== 'object' || Array.isArray(sample)) {
      return showResult(r, 'The sample must be a JSON object (an event).', false);
    }
    r.run.disabled = true;
    showResult(r, 'Testing…', null);
    try {
      const answer = await bus.api(`/rules/${encodeURIComponent(id)}/test`, { method: 'POST', body: sample });
      showResult(r, describeTest(answer), true);
    } catch (err) {
      showResult(r, `Refused: ${err.message}`, false);
    } finally {
      r.run.disabled = false;
    }
  }

  function showResult(r, text, ok) {
    r.result.classList.toggle('is-ok', ok === true);
    r.result.classList.toggle('is-error', ok === false);
    r.result.textContent = text;
  }

  // ---- the clock of "N s ago" ----

  setInterval(() => {
    for (const r of rows.values()) setText(r.cells.last, lastFired(r.cells.last.dataset.at));
  }, TICK_MS);

  $('#rules-refresh').addEventListener('click', refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
  return { refresh, rows };
}

// ---- words for a rule (pure) ----

function list(v) {
  return Array.isArray(v) ? v.filter((x) => typeof x === 'string' && x) : typeof v === 'string' && v ? [v] : [];
}

function per(scope) {
  const s = list(scope);
  return s.length ? ` per ${s.join(', ')}` : '';
}

/** One line for what `detect` looks for, e.g. "high score of data.score per metadata.tournament_id". */
function detectSummary(rule) {
  const d = rule.detect || {};
  switch (d.kind) {
    case 'high_score':
      return `high score of ${d.field}${per(d.scope)}${d.subject ? `, by ${d.subject}` : ''}${d.min != null ? `, from ${d.min}` : ''}`;
    case 'win_streak': {
      const who = d.winner
        ? `${d.winner}${d.loser ? ` over ${d.loser}` : ''}`
        : `${d.subject} when ${d.outcome} is ${JSON.stringify(d.win ?? 'win')}`;
      return `${d.length} wins in a row by ${who}${per(d.scope)}${d.repeat ? `, again every ${d.length}` : ''}`;
    }
    case 'threshold': {
      const parts = [];
      if (d.above != null) parts.push(`${d.field} ≥ ${d.above}`);
      if (d.below != null) parts.push(`${d.field} ≤ ${d.below}`);
      return `${parts.join(' or ') || d.field}${d.hysteresis ? `, re-armed ${d.hysteresis} back` : ''}${d.key ? ` per ${d.key}` : ''}`;
    }
    case 'value_change':
      return `change of ${d.field}${d.key ? ` per ${d.key}` : ''}${d.initial ? ', first value too' : ''}`;
    case 'links': {
      const platforms = list(d.platforms);
      return `stream links in ${d.field || 'message'}${d.author ? ` by ${d.author}` : ''}${platforms.length ? ` (${platforms.join(', ')})` : ''}`;
    }
    case 'map':
      return 'every matching event';
    default:
      return JSON.stringify(d);
  }
}

/** "every event", or "types a, b · streams c · …". */
function whenSummary(when) {
  const w = when && typeof when === 'object' ? when : {};
  const parts = [];
  const add = (label, v) => {
    const l = list(v);
    if (l.length) parts.push(`${label} ${l.join(', ')}`);
  };
  add('types', w.eventTypes);
  add('streams', w.streams);
  add('classes', w.classes);
  add('tags', w.tags);
  if (w.minPriority) parts.push(`priority ≥ ${w.minPriority}`);
  if (w.filter) parts.push(`filter ${typeof w.filter === 'string' ? w.filter : JSON.stringify(w.filter)}`);
  return parts.length ? parts.join(' · ') : 'every event';
}

/** "emits high_score to overlays · state records/{{…}}". */
function emitsSummary(rule) {
  const e = rule.emit || {};
  const type = e.type || DEFAULT_TYPE[rule.detect && rule.detect.kind] || '?';
  let s = `emits ${type}${e.stream ? ` to ${e.stream}` : ''}`;
  if (rule.state && rule.state.stream) s += ` · state ${rule.state.stream}/${rule.state.key || ''}`;
  return s;
}

/** The test's answer as text: matched, then each derived event and state write. */
function describeTest(a) {
  const derived = Array.isArray(a?.derived) ? a.derived : [];
  const writes = Array.isArray(a?.state) ? a.state : [];
  const lines = [];
  if (!a?.matched) {
    lines.push('matched: no — the rule does not look at this event');
  } else {
    lines.push(`matched: yes · ${derived.length} derived event${derived.length === 1 ? '' : 's'}`);
  }
  for (const ev of derived) {
    const where = ev.stream_id ? ` (${ev.stream_id})` : '';
    lines.push(`→ ${ev.type}${where}${ev.message ? `: ${ev.message}` : ''}`);
  }
  for (const w of writes) {
    lines.push(`state ${w.stream}/${w.key} ← ${JSON.stringify(w.patch)}`);
  }
  if (a?.matched && !derived.length) lines.push('(nothing fires for this event now)');
  return lines.join('\n');
}

// ---- a sample event for a rule ----

function first(v) {
  return list(v)[0];
}

/** A glob as one concrete name (`match.*` → `match.sample`). */
function concrete(glob, fallback) {
  if (!glob) return fallback;
  return glob.replace(/\*/g, 'sample').replace(/\?/g, 'x');
}

/** The value at a dotted path, or undefined. */
function getPath(obj, path) {
  if (typeof path !== 'string' || !path) return undefined;
  let cur = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** Sets a dotted path (`data.players.0`) in `obj`, making objects and arrays on the way. */
function setPath(obj, path, value) {
  if (typeof path !== 'string' || !path) return;
  const parts = path.split('.');
  let cur = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    const k = parts[i];
    if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = /^\d+$/.test(parts[i + 1]) ? [] : {};
    cur = cur[k];
  }
  const last = parts[parts.length - 1];
  if (Array.isArray(cur) && /^\d+$/.test(last)) {
    while (cur.length < Number(last)) cur.push(null);
  }
  cur[last] = value;
}

/**
 * An event this rule looks at, with what its detector reads filled in:
 * the first stream and event type of `when`, then e.g. for `high_score`
 * the score field, the scope and the subject.
 */
function sampleFor(rule) {
  const w = (rule && rule.when) || {};
  const d = (rule && rule.detect) || {};
  const stream = list(w.streams).find((s) => !s.startsWith('_'));
  const ev = {
    stream_id: concrete(stream, 'default'),
    type: concrete(first(w.eventTypes), 'sample'),
  };
  const cls = first(w.classes);
  if (cls) ev.class = cls;
  if (w.minPriority) ev.priority = w.minPriority;
  if (list(w.tags).length) ev.tags = list(w.tags);
  const set = (path, value) => setPath(ev, path, value);
  // Keys and scopes may name a field the event already has (`stream_id`).
  const key = (path) => {
    if (getPath(ev, path) === undefined) set(path, 'sample');
  };
  const scope = (paths) => {
    for (const p of list(paths)) key(p);
  };
  switch (d.kind) {
    case 'high_score':
      scope(d.scope);
      if (d.subject) set(d.subject, 'ana');
      set(d.field, Math.max(100, Number(d.min) || 0));
      break;
    case 'win_streak':
      scope(d.scope);
      if (d.winner) {
        set(d.winner, 'ana');
        if (d.loser) set(d.loser, 'bob');
      } else {
        if (d.subject) set(d.subject, 'ana');
        if (d.outcome) set(d.outcome, d.win ?? 'win');
      }
      break;
    case 'threshold':
      if (d.key) key(d.key);
      set(d.field, d.above != null ? Number(d.above) : d.below != null ? Number(d.below) : 0);
      break;
    case 'value_change':
      if (d.key) key(d.key);
      set(d.field, 'new value');
      break;
    case 'links':
      if (d.author) set(d.author, 'ana');
      set(d.field || 'message', 'live now at https://www.twitch.tv/sample_channel');
      break;
    default:
      ev.message = 'sample message';
  }
  return ev;
}
