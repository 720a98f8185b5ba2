// Small DOM helpers shared by the pages. Text is always set as text
// (createTextNode / textContent): event data never becomes markup.

/**
 * Creates an element. `attrs`: `class` (string or array), `text`,
 * `dataset` (object), `on` (object of event → handler), `hidden`,
 * `disabled`, `checked`, `value`, anything else via setAttribute (values
 * are strings, never code). `children`: nodes or strings (as text), null
 * and false are skipped, arrays are flattened.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    switch (k) {
      case 'class':
        el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
        break;
      case 'text':
        el.textContent = String(v);
        break;
      case 'dataset':
        for (const [dk, dv] of Object.entries(v)) {
          if (dv !== undefined && dv !== null) el.dataset[dk] = String(dv);
        }
        break;
      case 'on':
        for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        break;
      case 'hidden':
      case 'disabled':
      case 'checked':
      case 'selected':
        el[k] = !!v;
        break;
      case 'value':
        el.value = String(v);
        break;
      default:
        if (k.startsWith('on')) throw new Error(`use the 'on' map, not ${k}`);
        el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces all children of `el` with `children` (nodes or text). */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** `document.querySelector`. */
export const $ = (sel, root = document) => root.querySelector(sel);

/** `document.querySelectorAll`, as an array. */
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** A glob (`*`, `?`) as an anchored, case-sensitive RegExp. */
export function globToRegExp(glob) {
  const src = String(glob)
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${src}$`);
}

/** `HH:MM:SS` of an RFC 3339 time, a Date, or ms since the epoch. */
export function clock(t) {
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour12: false });
}

/** "3 s ago", "2 min ago" … */
export function ago(t) {
  const ms = Date.now() - new Date(t).getTime();
  if (!Number.isFinite(ms)) return '';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  return `${Math.round(m / 60)} h ago`;
}

/** The priority of an event (or queue item): `metadata.priority`, `priority`, else normal. */
export function priorityOf(e) {
  return (e && ((e.metadata && e.metadata.priority) || e.priority)) || 'normal';
}

/** True for a test event (`metadata.test: true`) or a queue item with `test: true`. */
export function isTest(e) {
  return !!(e && (e.test === true || (e.metadata && e.metadata.test === true)));
}
