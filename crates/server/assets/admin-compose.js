// Compose section: send an announcement (data event), an alert, an animated
// event, or fire a template. Events go over the WebSocket (answered with
// ACK) when it is open, else over REST; the answer or the problem's detail
// is shown under the form.

import { h, replace, $, $$ } from './dom.js';

export function initCompose(ctx) {
  const { bus } = ctx;
  const tabs = $$('.tabs [role="tab"]');
  let templates = [];

  // ---- tabs (arrow keys move between them, as a tablist should) ----

  function selectTab(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
  }
  for (const tab of tabs) {
    tab.addEventListener('click', () => selectTab(tab, false));
    tab.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(tab);
      let next = null;
      if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (e.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (e.key === 'Home') next = tabs[0];
      else if (e.key === 'End') next = tabs[tabs.length - 1];
      if (next) {
        e.preventDefault();
        selectTab(next, true);
      }
    });
  }

  // ---- results ----

  function show(form, text, ok) {
    const out = form.querySelector('output.result');
    out.classList.toggle('is-ok', ok);
    out.classList.toggle('is-error', !ok);
    out.textContent = text;
  }

  async function send(event) {
    if (bus.connected) {
      const ack = await bus.publish(event);
      return `ACK · ${ack.id} · offset ${ack.offset}${ack.duplicate ? ' · duplicate' : ''}`;
    }
    const stored = await bus.api('/events', { method: 'POST', body: event });
    return `Stored · ${stored.id} · offset ${stored.offset}`;
  }

  function metadata(form, withPriority) {
    const m = {};
    if (withPriority) m.priority = form.elements.priority.value;
    if (form.elements.test && form.elements.test.checked) m.test = true;
    return m;
  }

  function parseObject(text, what) {
    const t = text.trim();
    if (!t) return undefined;
    let v;
    try {
      v = JSON.parse(t);
    } catch (e) {
      throw new Error(`${what} is not valid JSON: ${e.message}`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} must be a JSON object`);
    return v;
  }

  const builders = {
    announce(f) {
      return {
        stream_id: f.elements.stream_id.value.trim(),
        type: f.elements.type.value.trim(),
        class: 'data',
        message: f.elements.message.value,
        metadata: metadata(f, true),
      };
    },
    alert(f) {
      const level = f.querySelector('input[name="level"]:checked');
      return {
        stream_id: f.elements.stream_id.value.trim(),
        type: f.elements.type.value.trim(),
        class: 'alert',
        level: level ? level.value : 'info',
        message: f.elements.message.value,
        metadata: metadata(f, false),
      };
    },
    animated(f) {
      const ev = {
        stream_id: f.elements.stream_id.value.trim(),
        type: f.elements.type.value.trim(),
        class: 'animated',
        message: f.elements.message.value,
        duration_ms: Number(f.elements.duration_ms.value) || 5000,
        cancelable: f.elements.cancelable.checked,
        replayable: f.elements.replayable.checked,
        metadata: metadata(f, true),
      };
      const data = parseObject(f.elements.data.value, 'Data');
      if (data !== undefined) ev.data = data;
      return ev;
    },
  };

  for (const kind of Object.keys(builders)) {
    const form = document.getElementById(`form-${kind}`);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const btn = form.querySelector('button[type="submit"]');
      btn.disabled = true;
      try {
        const text = await send(builders[kind](form));
        show(form, text, true);
      } catch (err) {
        show(form, err.message, false);
      } finally {
        btn.disabled = false;
      }
    });
  }

  // ---- templates ----

  const tform = $('#form-template');
  const tsel = $('#template-select');
  const tdesc = $('#template-desc');
  const tparams = tform.elements.params;
  const tbtn = tform.querySelector('button[type="submit"]');

  function describe() {
    const t = templates.find((x) => x.name === tsel.value);
    if (!t) {
      tdesc.textContent = templates.length ? '' : 'No templates yet: create one with POST /api/v1/event-templates.';
      return;
    }
    const ev = t.event || {};
    const bits = [t.description, ev.type && `type ${ev.type}`, ev.class && `class ${ev.class}`].filter(Boolean);
    tdesc.textContent = bits.join(' · ');
    const params = {};
    for (const [name, spec] of Object.entries(t.params || {})) {
      params[name] = spec && 'default' in spec ? spec.default : '';
    }
    tparams.value = JSON.stringify(params, null, 2);
  }

  async function loadTemplates() {
    try {
      const body = await bus.api('/event-templates');
      templates = Array.isArray(body?.data) ? body.data : [];
    } catch (e) {
      templates = [];
      show(tform, `Could not load templates: ${e.message}`, false);
    }
    const current = tsel.value;
    if (templates.length) {
      replace(tsel, ...templates.map((t) => h('option', { value: t.name, selected: t.name === current }, t.name)));
    } else {
      replace(tsel, h('option', { value: '' }, 'no templates'));
    }
    tsel.disabled = !templates.length;
    tbtn.disabled = !templates.length;
    describe();
  }

  tsel.addEventListener('change', describe);
  $('#template-reload').addEventListener('click', loadTemplates);
  tform.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = tsel.value;
    if (!name) return;
    tbtn.disabled = true;
    try {
      const body = { params: parseObject(tparams.value, 'Parameters') || {} };
      const stream = tform.elements.stream_id.value.trim();
      if (stream) body.stream_id = stream;
      const ev = await bus.api(`/event-templates/${encodeURIComponent(name)}/fire`, { method: 'POST', body });
      show(tform, `Fired · ${ev.id} · offset ${ev.offset} · ${ev.type}`, true);
    } catch (err) {
      show(tform, err.message, false);
    } finally {
      tbtn.disabled = !templates.length;
    }
  });

  // ---- stream names for the inputs ----

  const datalist = $('#stream-names');
  function fillStreams(names) {
    replace(datalist, ...[...names].filter((n) => !n.startsWith('_')).sort().map((n) => h('option', { value: n })));
  }
  ctx.onStreams.push(fillStreams);
  fillStreams(ctx.streams);

  loadTemplates();
  return { loadTemplates };
}
