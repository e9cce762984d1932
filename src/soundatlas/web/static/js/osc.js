// Live control over OSC, through the server (soundatlas serve --osc-out / --osc-in): what the
// page does (hover, select, play, selection) is posted to /api/events and goes out as OSC; what
// arrives over OSC comes in on the server-sent event stream /api/events/stream and moves a
// cursor on the map (playing the sample nearest it), plays or selects a sample.

import * as THREE from 'three';

const $ = (id) => document.getElementById(id);

export class OscLink {
  /** ``app``: the page's shared pieces (state, view, world, playSample, select, status);
   *  ``config``: /api/atlas's ``osc`` ({out, in}: where OSC goes and comes from, or null). */
  constructor(app, config) {
    this.app = app;
    this.out = config?.out || null;
    this.in = config?.in || null;
    this.source = null;
    this.failed = false; // one message about a failing send is enough
    this.box = null; // {model, lo, hi}: the map's bounding box (world), for cursor/norm
    this.cursorId = null;
    app.state.osc = { out: this.out, in: this.in, connected: false, sent: 0, received: 0,
      cursor: null, error: null };
    const parts = [this.out && `OSC out → ${this.out}`, this.in && `OSC in ← ${this.in}`].filter(Boolean);
    $('osc-status').textContent = parts.join('  ');
    $('osc-status').hidden = !parts.length;
  }

  hover(id, model) { this.send({ type: 'hover', id, model }); }

  select(id, model) { this.send({ type: 'select', id, model }); }

  play(id, model) { this.send({ type: 'play', id, model }); }

  /** The selection: its size and its first 1024 ids (what one OSC message carries). */
  selection(ids) { this.send({ type: 'selection', count: ids.length, ids: Array.from(ids.slice(0, 1024)) }); }

  async send(event) {
    if (!this.out) return;
    try {
      const response = await fetch('/api/events', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(event),
      });
      if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
      this.app.state.osc.sent++;
      this.failed = false;
    } catch (error) {
      if (!this.failed) this.app.status(`OSC out: ${error.message}`, 'error');
      this.failed = true;
    }
  }

  /** Open the event stream (when the server listens for OSC); it reconnects by itself. */
  listen() {
    if (!this.in || this.source) return;
    this.source = new EventSource('/api/events/stream');
    this.source.onmessage = (message) => this.handle(JSON.parse(message.data));
    this.source.onerror = () => { this.app.state.osc.connected = false; };
  }

  handle(event) {
    const { state, status } = this.app;
    if (event.type === 'hello') {
      state.osc.connected = true;
      return;
    }
    state.osc.received++;
    if (event.type === 'error') {
      state.osc.error = event.message;
      status(event.message, 'error');
    } else if (event.type === 'cursor') {
      this.cursor(event);
    } else if (event.type === 'play') {
      this.app.playSample(event.id);
    } else if (event.type === 'select') {
      this.app.select(event.id);
    }
  }

  /** Move the cursor to ``event.point`` (the map's coordinates) or ``event.norm`` ([0, 1] of
   *  its bounding box) and play the nearest sample when that changes. */
  cursor(event) {
    const { state, view } = this.app;
    if (!state.ready || !state.nPoints) return;
    if (event.point && event.point.length !== this.app.dims()) {
      const message = `OSC ${event.address}: ${event.point.length} coordinates, but the map of `
        + `${state.model} has ${this.app.dims()}`;
      state.osc.error = message;
      this.app.status(message, 'error');
      return;
    }
    const world = event.point
      ? Array.from(this.app.world(Float32Array.from(event.point), 1, event.point.length))
      : this.fromNorm(event.norm);
    const i = nearest(view.positions, state.nPoints, world);
    const id = i >= 0 ? this.app.pointIds()[i] : null;
    const marker = view.overlays.get('osc:cursor');
    if (marker) { // moved, not made again: a controller may send a hundred messages a second
      marker.position.set(...world);
      view.requestRender();
    } else {
      view.setMarker('osc:cursor', new THREE.Vector3(...world), '#ffa657', '+', 20);
    }
    state.osc.cursor = { world, id };
    if (id !== null && id !== this.cursorId) this.app.playSample(id);
    this.cursorId = id;
  }

  fromNorm(norm) {
    const { state, view } = this.app;
    if (!this.box || this.box.model !== state.model || this.box.n !== state.nPoints) {
      const lo = [Infinity, Infinity, Infinity];
      const hi = [-Infinity, -Infinity, -Infinity];
      const p = view.positions;
      for (let i = 0; i < state.nPoints; i++) {
        for (let j = 0; j < 3; j++) {
          lo[j] = Math.min(lo[j], p[3 * i + j]);
          hi[j] = Math.max(hi[j], p[3 * i + j]);
        }
      }
      this.box = { model: state.model, n: state.nPoints, lo, hi };
    }
    const { lo, hi } = this.box;
    return [0, 1, 2].map((j) => (j < norm.length ? lo[j] + norm[j] * (hi[j] - lo[j]) : (lo[j] + hi[j]) / 2));
  }
}

/** Index of the point (world positions, n x 3) nearest ``w``, or -1 when there is none. */
function nearest(positions, n, w) {
  let best = -1;
  let bestD = Infinity;
  for (let i = 0; i < n; i++) {
    const dx = positions[3 * i] - w[0];
    const dy = positions[3 * i + 1] - w[1];
    const dz = positions[3 * i + 2] - w[2];
    const d = dx * dx + dy * dy + dz * dz;
    if (d < bestD) [best, bestD] = [i, d];
  }
  return best;
}
