// Draw a path on the map and hear it: in path mode a click adds a waypoint and a drag draws a
// line of them (each a sample's point where the pointer passes over one, else the spot under the
// pointer on the plane through the view's centre that faces the camera; right-drag still pans,
// the wheel zooms); the server renders the path by concatenative synthesis
// (POST /api/models/{m}/synth) and the page plays the WAV, tracing the path as it sounds, and
// offers it as a download.

import * as THREE from 'three';
import * as api from './api.js';
import { RenderedSound } from './rendered.js';

const $ = (id) => document.getElementById(id);
const MAX_POINTS = 10_000;
const DRAW_STEP_PX = 16; // a dragged line gets a waypoint every this many pixels

export class PathTool {
  /** ``app``: the page's shared pieces (state, view, player, world, model, show, status). */
  constructor(app) {
    this.app = app;
    this.waypoints = []; // [{world: THREE.Vector3, id: sample id or null}]
    this.sound = new RenderedSound(app.player, 'path', 'path');
    this.render = null; // {step, n, glide} of the path rendered (for the trace), or null
    this.raycaster = new THREE.Raycaster();
  }

  /** Seconds per point: the field's value within 0.05..10 (0.5 when it is not a number). */
  get step() {
    const text = $('path-step').value.trim();
    const s = Number(text);
    return text !== '' && Number.isFinite(s) ? Math.min(Math.max(s, 0.05), 10) : 0.5;
  }

  /** The field shows the seconds per point used (0.04 typed is 0.05). */
  stepChanged() {
    if (String(this.step) !== $('path-step').value) $('path-step').value = String(this.step);
    this.drawn();
  }

  /** 'path': clicks add waypoints; 'explore': clicks select. */
  setMode(on) {
    const { state } = this.app;
    state.mode = on ? 'path' : (state.mode === 'path' ? 'explore' : state.mode);
    $('path-mode').setAttribute('aria-pressed', String(on));
    $('map').classList.toggle('picking', on);
    if (on) $('path').hidden = false;
    this.show();
  }

  /** A pointerdown on the map (capture phase, before the orbit controls): in path mode the
   *  left button draws (Shift stays the selection's). */
  start(event) {
    const { state, view } = this.app;
    if (state.mode !== 'path' || event.button !== 0 || event.shiftKey || !state.ready) return;
    if (event.target !== view.canvas) return; // the legend, its scrollbar: not the map
    event.stopPropagation();
    event.preventDefault();
    const at = [event.clientX, event.clientY];
    let last = at;
    let moved = false;
    const n0 = this.waypoints.length;
    const move = (e) => {
      if (Math.hypot(e.clientX - last[0], e.clientY - last[1]) < DRAW_STEP_PX) return;
      if (!moved) this.click(view.pick(...at), ...at); // the line starts where the drag did
      moved = true;
      last = [e.clientX, e.clientY];
      this.click(view.pick(e.clientX, e.clientY), e.clientX, e.clientY);
    };
    const up = (e) => {
      window.removeEventListener('pointermove', move);
      if (!moved) this.click(view.pick(e.clientX, e.clientY), e.clientX, e.clientY);
      else this.app.status(`Drew ${this.waypoints.length - n0} points.`);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up, { once: true });
  }

  /** Add a waypoint where the user clicked: on point ``index`` (or -1) at client (x, y). */
  click(index, x, y) {
    const { view, pointIds } = this.app;
    if (this.waypoints.length >= MAX_POINTS) return;
    // the same sample twice in a row (a double-click to fly there, a drag over one point)
    if (index >= 0 && this.waypoints.at(-1)?.id === pointIds()[index]) return;
    if (index >= 0) this.waypoints.push({ world: view.position(index).clone(), id: pointIds()[index] });
    else this.waypoints.push({ world: this.onPlane(x, y), id: null });
    this.drawn();
  }

  /** After a model switch: waypoints on samples move to those samples' new places, and a
   *  rendering of the old map is dropped. A sample the new model has not embedded stays a
   *  spot on the map where it was (the render cannot ask for its point; a model that maps it
   *  again puts it back on it), and the page says how many. */
  replace(indexOf) {
    if (!this.waypoints.length) return;
    let spots = 0;
    for (const w of this.waypoints) {
      const i = w.id === null ? -1 : indexOf(w.id);
      w.unmapped = w.id !== null && i < 0; // its sample again once a model maps it
      if (i >= 0) w.world = this.app.view.position(i).clone();
      else if (w.unmapped) spots++;
    }
    this.drawn();
    if (spots) {
      const what = spots > 1 ? `${spots} points of the path are samples`
        : '1 point of the path is a sample';
      this.app.status(`${what} this model has not mapped: kept as spots on the map`);
    }
  }

  undo() {
    this.waypoints.pop();
    this.drawn();
  }

  clear() {
    this.waypoints = [];
    this.drawn(); // drops the rendering too
  }

  /** The waypoints changed: redraw them; an earlier render no longer matches. */
  drawn() {
    const { view } = this.app;
    view.removeAll('path');
    const n = this.waypoints.length;
    if (n) {
      const positions = new Float32Array(n * 3);
      this.waypoints.forEach((w, i) => w.world.toArray(positions, 3 * i));
      view.setPath('path', positions, '#7ee787', '#f778ba');
      view.setMarker('path:start', this.waypoints[0].world, '#7ee787', '1', 18);
      if (n > 1) view.setMarker('path:end', this.waypoints[n - 1].world, '#f778ba', String(n), 18);
    }
    this.forget();
    this.show();
  }

  forget() {
    this.sound.forget(); // a rendering still on its way is of the path as it was: dropped
    this.render = null;
    this.app.state.path = { points: this.waypoints.length, rendered: null };
  }

  show() {
    const n = this.waypoints.length;
    const { state } = this.app;
    state.path = { points: n, rendered: state.path?.rendered ?? null };
    $('path-count').textContent = n ? `${n} point${n > 1 ? 's' : ''}, ${(n * this.step).toFixed(2)} s` : '';
    $('path-prompt').textContent = state.mode !== 'path'
      ? 'Press Path (or p), then click on the map to draw.'
      : n ? 'Click or drag to add points (Backspace undoes), then Render.'
        : 'Click or drag on the map to draw a path.';
    $('path-render').disabled = n === 0;
    $('path-undo').disabled = $('path-clear').disabled = n === 0;
  }

  /** Client (x, y) on the plane through the orbit centre that faces the camera (world). */
  onPlane(x, y) {
    const { view } = this.app;
    const rect = view.canvas.getBoundingClientRect();
    const ndc = new THREE.Vector2(((x - rect.left) / rect.width) * 2 - 1,
      -((y - rect.top) / rect.height) * 2 + 1);
    view.camera.updateMatrixWorld();
    this.raycaster.setFromCamera(ndc, view.camera);
    const normal = view.camera.getWorldDirection(new THREE.Vector3());
    const plane = new THREE.Plane().setFromNormalAndCoplanarPoint(normal, view.controls.target);
    return this.raycaster.ray.intersectPlane(plane, new THREE.Vector3()) || view.controls.target.clone();
  }

  /** The request body: sample ids when every waypoint is a sample, else model coordinates. */
  body() {
    const durations = this.waypoints.map(() => this.step);
    const common = { durations, glide: $('path-glide').checked, grain: Number($('path-grain').value) };
    if (this.waypoints.every((w) => w.id !== null && !w.unmapped)) {
      return { ...common, ids: this.waypoints.map((w) => w.id) };
    }
    const dims = this.app.dims();
    if (dims > 3) throw new Error(`this model maps to ${dims} dimensions: draw the path through points only`);
    return { ...common, points: this.waypoints.map((w) => this.app.fromWorld(w.world).slice(0, dims)) };
  }

  async renderPath() {
    const { state, status } = this.app;
    if (!this.waypoints.length) return;
    let body = null; // made inside the request, so that its refusal shows like the server's
    const answer = await this.sound.fetch((signal) => api.synth(state.model, body = this.body(), signal),
      `Rendering ${(this.waypoints.length * this.step).toFixed(1)} s…`,
      (error) => status(error.message, 'error'));
    if (!answer) return;
    // what was rendered, from the request (the page may have moved on since it was sent)
    this.render = { step: body.durations[0], n: body.durations.length, glide: body.glide };
    state.path = { points: this.waypoints.length, rendered: { ...answer.summary, bytes: answer.blob.size } };
    this.show();
    $('path-status').textContent = `${answer.summary.duration.toFixed(2)} s from ${answer.summary.n_grains} grains `
      + `of ${answer.summary.n_samples_used} sounds.`;
    this.play();
  }

  play() {
    this.sound.play();
  }

  /** Fractional waypoint of the trace at ``seconds`` into the rendering (null: none). */
  traceAt(seconds) {
    if (!this.render) return null;
    const at = seconds / this.render.step; // gliding moves on at once; holding stays put
    return Math.min(this.render.n - 1, this.render.glide ? at : Math.floor(at));
  }
}
