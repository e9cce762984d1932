// Selection and export: Shift+drag draws a box (or a lasso) on the map and selects the points
// (not dimmed) whose projection falls inside; the selection exports through POST /api/export
// as an M3U playlist, a CSV or a zip of the files, downloaded under the server's file name.

import * as api from './api.js';
import { saveBlob } from './panel.js';
import { FLAG } from './scene.js';

const $ = (id) => document.getElementById(id);

export class Selection {
  /** ``app``: the page's shared pieces (state, view, pointIds, refreshFlags, status). */
  constructor(app) {
    this.app = app;
    this.ids = new Int32Array(0); // ascending
    this.drag = null;
    this.onMove = (event) => this.draw(event);
  }

  /** A pointerdown (capture phase, before the orbit controls): Shift starts a box or lasso. */
  start(event) {
    if (!event.shiftKey || event.button !== 0 || !this.app.state.ready) return;
    event.stopPropagation(); // the orbit controls never see it
    event.preventDefault();
    this.drag = { lasso: $('select-shape').value === 'lasso', add: event.ctrlKey || event.metaKey,
      points: [[event.clientX, event.clientY]] };
    window.addEventListener('pointermove', this.onMove);
    window.addEventListener('pointerup', (e) => this.end(e), { once: true });
  }

  get dragging() {
    return this.drag !== null;
  }

  draw(event) {
    const rect = $('map').getBoundingClientRect();
    const { points } = this.drag;
    const [x0, y0] = points[0];
    const [xl, yl] = points[points.length - 1];
    if (this.drag.lasso) {
      if (Math.hypot(event.clientX - xl, event.clientY - yl) < 3) return;
      points.push([event.clientX, event.clientY]);
      $('lasso').firstElementChild.setAttribute('points',
        points.map(([x, y]) => `${x - rect.left},${y - rect.top}`).join(' '));
      $('lasso').hidden = false;
      return;
    }
    Object.assign($('box').style, {
      left: `${Math.min(x0, event.clientX) - rect.left}px`, top: `${Math.min(y0, event.clientY) - rect.top}px`,
      width: `${Math.abs(event.clientX - x0)}px`, height: `${Math.abs(event.clientY - y0)}px`,
    });
    $('box').hidden = false;
  }

  end(event) {
    window.removeEventListener('pointermove', this.onMove);
    $('box').hidden = true;
    $('lasso').hidden = true;
    const { lasso, add, points } = this.drag;
    this.drag = null;
    const [x0, y0] = points[0];
    if (lasso) {
      if (points.length > 2) this.lasso(points, add);
    } else if (Math.abs(event.clientX - x0) > 3 && Math.abs(event.clientY - y0) > 3) {
      this.box(x0, y0, event.clientX, event.clientY, add);
    }
  }

  /** Select the points whose projection falls in the client rectangle; the ids. */
  box(x0, y0, x1, y1, add = false) {
    const bounds = { x0: Math.min(x0, x1), y0: Math.min(y0, y1), x1: Math.max(x0, x1), y1: Math.max(y0, y1) };
    return this.inside(bounds, () => true, add);
  }

  /** Select the points whose projection falls inside the client polygon [[x, y], ...]. */
  lasso(points, add = false) {
    const xs = points.map(([x]) => x);
    const ys = points.map(([, y]) => y);
    const bounds = { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
    return this.inside(bounds, (x, y) => inPolygon(x, y, points), add);
  }

  inside(bounds, test, add) {
    const { view } = this.app;
    const found = view.inRegion(bounds, test, (i) => (view.flags[i] & FLAG.DIM) !== 0);
    const pointIds = this.app.pointIds();
    const ids = found.map((i) => pointIds[i]);
    this.set(add ? [...this.app.state.selection, ...ids] : ids);
    return this.app.state.selection;
  }

  /** Make ``ids`` the selection (duplicates once). */
  set(ids) {
    this.ids = Int32Array.from(new Set(ids)).sort();
    this.app.state.selection = Array.from(this.ids);
    this.app.onSelection?.(this.ids);
    const n = this.ids.length;
    $('selection-count').textContent = n
      ? `${n} sample${n === 1 ? '' : 's'} selected.`
      : 'Shift+drag on the map to select (Shift+Ctrl adds).';
    for (const id of ['selection-clear', 'selection-star', 'selection-unstar', 'selection-tag-add',
      'selection-collect', 'selection-suggest', 'kit-add-selection']) $(id).disabled = !n;
    this.exportButtons();
    this.app.refreshFlags();
  }

  add(ids) {
    this.set([...this.app.state.selection, ...ids]);
  }

  /** Download the selection as ``format`` (m3u, csv, zip); the server's error is shown. */
  async export(format) {
    return this.exportIds(Array.from(this.ids), format);
  }

  /** Download samples ``ids`` (in that order) as ``format``; one export at a time, its
   *  buttons disabled while it is built (a zip of many samples takes a while). */
  async exportIds(ids, format) {
    if (this.exporting) return;
    this.exporting = true;
    this.exportButtons();
    $('export-error').hidden = true;
    this.app.status(`Building the ${format.toUpperCase()} of ${ids.length} samples…`);
    try {
      const { blob, filename } = await api.postForBlob('/api/export', { ids, format });
      saveBlob(blob, filename);
      this.app.status(`Exported ${ids.length} samples as ${filename}`);
    } catch (error) {
      this.app.status('');
      $('export-error').textContent = error.message;
      $('export-error').hidden = false;
    } finally {
      this.exporting = false;
      this.exportButtons();
    }
  }

  /** The export buttons: usable with a selection and no export being built. */
  exportButtons() {
    for (const id of ['export-m3u', 'export-csv', 'export-zip']) {
      $(id).disabled = !this.ids.length || Boolean(this.exporting);
    }
  }
}

/** Whether (x, y) is inside the polygon [[x, y], ...] (even-odd rule). */
function inPolygon(x, y, points) {
  let inside = false;
  for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
    const [xi, yi] = points[i];
    const [xj, yj] = points[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
