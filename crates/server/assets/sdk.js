// streambus browser SDK — an ES module, no dependencies.
//
//   import { StreambusClient } from '/sdk.js';
//   const bus = new StreambusClient({ token, filter: { streams: ['default'] } });
//   bus.on('event', (event, frame) => console.log(event.type, event.message));
//   const ack = await bus.publish({ type: 'hello', message: 'hi' });
//
// The client keeps one WebSocket to `/api/v1/ws`, reconnects with
// exponential backoff and jitter (capped at 10 s) and, on reconnect,
// subscribes again with `since` = the last offset it saw, so nothing is lost
// or repeated across a dropped connection. See docs/PAGES.md.

const DEFAULT_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const MAX_OUTBOX = 200;

/** The token in this page's own URL (`?token=`), or null. */
export function pageToken() {
  try {
    return new URLSearchParams(globalThis.location?.search ?? '').get('token');
  } catch {
    return null;
  }
}

function defaultWsUrl() {
  const loc = globalThis.location;
  const scheme = loc && loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc ? loc.host : 'localhost:8080'}/api/v1/ws`;
}

/** `/api/v1` on the server that `wsUrl` points at. */
function apiBaseFor(wsUrl) {
  const u = new URL(wsUrl, globalThis.location?.href);
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = u.pathname.replace(/\/ws\/?$/, '') || '/api/v1';
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/$/, '');
}

/** An Error for a refused request, carrying what the server said. */
export class StreambusError extends Error {
  constructor(message, { status, code, field, problem, frame } = {}) {
    super(message);
    this.name = 'StreambusError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.problem = problem;
    this.frame = frame;
  }
}

/** The streambus WebSocket client. */
export class StreambusClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url]     WebSocket URL (default: this page's server, `/api/v1/ws`)
   * @param {string} [options.apiBase] REST base (default: derived from `url`, `…/api/v1`)
   * @param {string} [options.token]   sent as `?token=` on the socket and `Authorization: Bearer` on fetch
   * @param {string} [options.overlayId] join this overlay's playout queue
   * @param {object} [options.filter]  SUBSCRIBE filter fields: streams, eventTypes, classes, tags, minPriority, filter
   * @param {boolean} [options.overlayUpdates] also receive ANIMATION_* status and OVERLAY_STATE frames
   * @param {boolean} [options.subscribe] subscribe on connect (default: when any of the three above is given)
   * @param {boolean} [options.autoConnect] connect at once (default true)
   */
  constructor(options = {}) {
    this.url = options.url || defaultWsUrl();
    this.apiBase = options.apiBase || apiBaseFor(this.url);
    this.token = options.token ?? null;
    this.overlayId = options.overlayId ?? null;
    this.filter = options.filter ?? null;
    this.overlayUpdates = !!options.overlayUpdates;
    this.subscribing =
      options.subscribe ?? (this.overlayId != null || this.filter != null || this.overlayUpdates);
    /** The offset of the last event received from the subscription. */
    this.lastOffset = null;
    this.ws = null;
    this._handlers = new Map();
    this._pending = new Map();
    this._outbox = [];
    this._attempt = 0;
    this._refSeq = 0;
    this._timer = null;
    this._closed = false;
    this._noOverlayUpdates = false;
    if (options.autoConnect !== false) this.connect();
  }

  /** True while the socket is open. */
  get connected() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Opens the socket (again); called by the constructor unless `autoConnect: false`. */
  connect() {
    this._closed = false;
    clearTimeout(this._timer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    let url = this.url;
    if (this.token) {
      const u = new URL(url, globalThis.location?.href);
      u.searchParams.set('token', this.token);
      url = u.toString();
    }
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._attempt = 0;
      if (this.subscribing) this._sendSubscribe();
      const queued = this._outbox.splice(0);
      for (const text of queued) ws.send(text);
      this._emit('open', {});
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === 'string') this._dispatch(frame);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._emit('close', { code: e.code, reason: e.reason });
      if (!this._closed) this._scheduleReconnect();
    };
    ws.onerror = () => {
      // A close always follows; reconnecting is handled there.
    };
  }

  /** Closes the socket for good (no reconnect); pending requests fail. */
  close() {
    this._closed = true;
    clearTimeout(this._timer);
    if (this.ws) this.ws.close(1000, 'client closed');
    for (const [ref, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new StreambusError('client closed'));
      this._pending.delete(ref);
    }
  }

  /**
   * Listens for a frame type (`EVENT_BROADCAST`, `ACK`, `ERROR`,
   * `OVERLAY_STATE`, `ANIMATION_CANCEL`, …), `'*'` for every frame,
   * `'event'` for each event received (handler gets `(event, frame)`),
   * `'open'` or `'close'`. Returns a function that removes the handler.
   */
  on(type, fn) {
    const key = String(type);
    if (!this._handlers.has(key)) this._handlers.set(key, new Set());
    this._handlers.get(key).add(fn);
    return () => this.off(type, fn);
  }

  /** Removes a handler added with `on`. */
  off(type, fn) {
    this._handlers.get(String(type))?.delete(fn);
  }

  /**
   * Subscribes (replacing any previous subscription) with `filter`'s fields
   * (`streams`, `eventTypes`, `classes`, `tags`, `minPriority`, `filter`);
   * `{}` is everything. Starts live: `since` is kept only across reconnects.
   */
  subscribe(filter = {}) {
    this.filter = filter;
    this.subscribing = true;
    this.lastOffset = null;
    if (this.connected) this._sendSubscribe();
  }

  /** Publishes an event; resolves with the `ACK` (`{id, offset, duplicate}`). */
  publish(event, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    return this._request({ type: 'PUBLISH', event }, timeoutMs);
  }

  /** Overlay report: the animation of `eventId` (play number `play`) began. */
  started(eventId, play = 0) {
    this._report('ANIMATION_STARTED', eventId, play);
  }

  /** Overlay report: it finished; the queue may send the next one. */
  ended(eventId, play = 0) {
    this._report('ANIMATION_ENDED', eventId, play);
  }

  /** Overlay report: it stopped after an `ANIMATION_CANCEL`. */
  cancelled(eventId, play = 0) {
    this._report('ANIMATION_CANCELLED', eventId, play);
  }

  /** Overlay report: it could not be played. */
  failed(eventId, play = 0, reason = 'failed') {
    this._report('ANIMATION_FAILED', eventId, play, { reason: String(reason) });
  }

  /** Overlay report: the OBS source (or the page) was shown or hidden. */
  visibility(visible) {
    this.send({ type: 'OVERLAY_VISIBILITY', visible: !!visible });
  }

  /** Cancels an animated event (everywhere, or on `targetOverlay`); resolves with `CONTROL_OK`. */
  cancel(eventId, targetOverlay) {
    const frame = { type: 'ANIMATION_CANCEL', eventId };
    if (targetOverlay) frame.targetOverlay = targetOverlay;
    return this._request(frame);
  }

  /** Queues a finished animated event again; resolves with `CONTROL_OK`. */
  replay(eventId, targetOverlay) {
    const frame = { type: 'ANIMATION_REPLAY', eventId };
    if (targetOverlay) frame.targetOverlay = targetOverlay;
    return this._request(frame);
  }

  /** `skip`, `pause`, `resume` or `clear` (optionally only `eventType`) an overlay's queue. */
  control(overlay, action, eventType) {
    const frame = { type: 'OVERLAY_CONTROL', overlay, action };
    if (eventType) frame.eventType = eventType;
    return this._request(frame);
  }

  /** Sends a raw frame (queued while disconnected, sent after resubscribing). */
  send(frame) {
    const text = JSON.stringify(frame);
    if (this.connected) {
      this.ws.send(text);
    } else {
      if (this._outbox.length >= MAX_OUTBOX) this._outbox.shift();
      this._outbox.push(text);
    }
  }

  /**
   * REST helper: `api('/events?limit=10')`, `api('/events', {method: 'POST', body})`.
   * Paths are relative to `/api/v1`. Resolves with the JSON body (null for
   * an empty one); rejects with a `StreambusError` whose message is the
   * problem's `detail`.
   */
  async api(path, { method, body, headers } = {}) {
    const h = { Accept: 'application/json', ...(headers || {}) };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    const init = { method: method || (body === undefined ? 'GET' : 'POST'), headers: h };
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const url = /^https?:/.test(path) ? path : this.apiBase + (path.startsWith('/') ? path : `/${path}`);
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new StreambusError(`network error: ${e.message}`, { status: 0 });
    }
    const text = await res.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    if (!res.ok) {
      const detail = (json && (json.detail || json.title || json.message)) || `${res.status} ${res.statusText}`;
      throw new StreambusError(detail, { status: res.status, problem: json, field: json?.field });
    }
    return json;
  }

  // ---- internals ----

  _report(type, eventId, play, extra = {}) {
    const frame = { type, eventId, play: Number(play) || 0, timestamp: Date.now(), ...extra };
    if (this.overlayId) frame.overlay = this.overlayId;
    this.send(frame);
  }

  _request(frame, timeoutMs = DEFAULT_TIMEOUT_MS) {
    const ref = `r${++this._refSeq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new StreambusError(`no answer to ${frame.type} within ${timeoutMs} ms`, { code: 'timeout' }));
      }, timeoutMs);
      this._pending.set(ref, { resolve, reject, timer });
      this.send({ ...frame, ref });
    });
  }

  _sendSubscribe() {
    const frame = { type: 'SUBSCRIBE', ...(this.filter || {}) };
    if (this.overlayId) frame.overlayId = this.overlayId;
    if (this.overlayUpdates && !this._noOverlayUpdates) frame.overlayUpdates = true;
    if (this.lastOffset != null) frame.since = this.lastOffset;
    this.ws.send(JSON.stringify(frame));
  }

  _scheduleReconnect() {
    clearTimeout(this._timer);
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this._attempt);
    this._attempt = Math.min(this._attempt + 1, 16);
    // "Equal jitter": half fixed, half random, so clients that lost the
    // same server do not all come back in the same instant.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this._timer = setTimeout(() => this.connect(), delay);
  }

  _dispatch(frame) {
    const ref = frame.ref != null ? String(frame.ref) : null;
    if (ref && this._pending.has(ref)) {
      const p = this._pending.get(ref);
      if (frame.type === 'ERROR') {
        this._pending.delete(ref);
        clearTimeout(p.timer);
        p.reject(new StreambusError(frame.message || frame.code || 'refused', {
          code: frame.code,
          field: frame.field,
          frame,
        }));
      } else if (frame.type === 'ACK' || frame.type === 'CONTROL_OK') {
        this._pending.delete(ref);
        clearTimeout(p.timer);
        p.resolve(frame);
      }
    }
    if (frame.type === 'SUBSCRIBED' && this.lastOffset == null && Number.isFinite(frame.offset)) {
      // Nothing seen yet: a reconnect resumes from where the subscription went live.
      this.lastOffset = frame.offset;
    }
    if (
      frame.type === 'ERROR' &&
      frame.field === 'overlayUpdates' &&
      !this._noOverlayUpdates &&
      this.connected
    ) {
      // A server without the overlay queue refuses the field: subscribe
      // without it so the events still flow.
      this._noOverlayUpdates = true;
      this._sendSubscribe();
    }
    if (frame.type === 'EVENT_BROADCAST' && frame.event) {
      const off = frame.event.offset;
      // Queue plays (`play` present) may be older events or come ahead of
      // the subscription; only subscription deliveries move the resume point.
      if (frame.play === undefined && Number.isFinite(off) && (this.lastOffset == null || off > this.lastOffset)) {
        this.lastOffset = off;
      }
      this._emit('event', frame.event, frame);
    }
    this._emit(frame.type, frame);
    this._emit('*', frame);
  }

  _emit(type, ...args) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(`streambus: ${type} handler failed`, e);
      }
    }
  }
}

export default StreambusClient;
