// The kit builder: up to 16 lanes, each a sample with 16 steps, played with Web Audio at a
// tempo and swing. Hits are scheduled ahead on the audio clock (sample-accurate), never by
// timers alone: a timer only wakes the scheduler, which books every hit that falls in the next
// LOOKAHEAD seconds with source.start(when). A lane's sound can be swapped for its nearest
// neighbour on the map while the pattern plays (key n). The kit exports as a zip (samples,
// pattern.mid, kit.json: POST /api/kits/export) and imports again from its kit.json, each lane's
// sound found by its path.

import * as api from './api.js';
import { basename, el, saveBlob } from './panel.js';

const $ = (id) => document.getElementById(id);
const STEPS = 16;
const KMEANS_POINTS = 20000; // points a suggested kit's regions are found from, at most
const MAX_LANES = 16;
const LOOKAHEAD = 0.12; // seconds booked ahead
const WAKE_MS = 25; // how often the scheduler looks

const SEARCH_PAGE = 1000; // matches asked at once when looking a path up

/** The id of the sample at exactly ``path`` (null: none): the search by path substring
 *  (GET /api/samples?q=, which ignores case), paged until one match is the path itself. */
async function findByPath(path) {
  for (let offset = 0; ;) {
    const params = new URLSearchParams({ q: path, limit: String(SEARCH_PAGE), offset: String(offset) });
    const page = await api.getJSON(`/api/samples?${params}`);
    const hit = page.items.find((item) => item.path === path);
    if (hit) return hit.id;
    offset += page.items.length;
    if (!page.items.length || offset >= page.total) return null;
  }
}

export class KitBuilder {
  /** ``app``: the page's shared pieces (state, player, pathOf, status, pointIds, view). */
  constructor(app) {
    this.app = app;
    this.lanes = []; // [{id, steps: [bool x 16], volume}]
    this.tempo = 120;
    this.swing = 0.5;
    this.focus = 0; // the lane key n swaps
    this.timer = null;
    this.starting = null; // a play() still loading its sounds
    this.buffers = new Map(); // id -> AudioBuffer
    this.publish();
  }

  publish() {
    this.app.state.kit = {
      lanes: this.lanes.map((l) => ({ id: l.id, steps: [...l.steps], volume: l.volume })),
      tempo: this.tempo, swing: this.swing, playing: this.timer !== null,
      scheduled: this.app.state.kit?.scheduled ?? 0, step: this.app.state.kit?.step ?? 0,
      focus: this.focus, swaps: this.app.state.kit?.swaps ?? 0,
    };
  }

  /** A lane for each of ``ids`` while there is room; the status line says how many found none. */
  add(ids) {
    const room = Math.max(0, MAX_LANES - this.lanes.length);
    for (const id of ids.slice(0, room)) {
      this.lanes.push({ id, steps: Array(STEPS).fill(false), volume: 0.8 });
    }
    if (ids.length > room) {
      const left = ids.length - room;
      this.app.status(`A kit holds ${MAX_LANES} lanes: ${left} sound${left === 1 ? '' : 's'} of `
        + `${ids.length} found no lane`, 'error');
    }
    this.render();
  }

  remove(i) {
    this.lanes.splice(i, 1);
    this.focus = Math.min(this.focus, Math.max(0, this.lanes.length - 1));
    this.render();
  }

  toggle(i, step) {
    this.lanes[i].steps[step] = !this.lanes[i].steps[step];
    this.focus = i;
    this.render();
  }

  /** Swap lane ``i``'s sound for its nearest sound not already in the kit and not a copy of it
   *  (in the similarity space, as the page's nearest sounds; the map's points where the model
   *  has none). One swap at a time: a second press while one is asked for is ignored. */
  async swap(i = this.focus) {
    const lane = this.lanes[i];
    if (!lane || this.swapping) return;
    let near;
    this.swapping = true;
    try {
      near = await api.neighbours(this.app.state.model, lane.id, 20);
    } catch (error) {
      this.app.status(`Cannot swap the sound: ${error.message}`, 'error');
      return;
    } finally {
      this.swapping = false;
    }
    const at = this.lanes.indexOf(lane); // (lanes before it may have gone meanwhile)
    if (at < 0) return; // the lane itself went
    const used = new Set(this.lanes.map((l) => l.id)); // the kit as it is now, not when asked
    // nor the same file at another path: a swap is for another sound
    const next = near.neighbours.find((n) => !used.has(n.id) && !n.copy);
    if (!next) {
      this.app.status('No sound near this one is left outside the kit', 'error');
      return;
    }
    lane.id = next.id;
    this.focus = at;
    this.app.state.kit.swaps = (this.app.state.kit.swaps ?? 0) + 1;
    this.render();
    this.load(next.id).catch((error) => this.app.status(`Cannot load the swapped sound: ${error.message}`, 'error'));
  }

  /** A kit of ``n`` sounds from distinct regions of the map: k-means on the points shown
   *  (seeded, so the same map gives the same kit; on an evenly spaced sample of at most
   *  ``KMEANS_POINTS`` of them, so a map of a million points does not stop the page), each
   *  region's sound nearest its centre. */
  suggest(n) {
    const ids = this.app.pointIds();
    const pos = this.app.view.positions;
    const all = ids.length;
    if (!all) return;
    n = Math.min(n, all);
    const stride = Math.ceil(all / KMEANS_POINTS);
    const count = Math.ceil(all / stride);
    const at = (i) => i * stride; // the sample's i-th point
    let seed = 12345;
    const random = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
    const centres = [];
    // of point j of the whole map
    const dist2 = (j, c) => (pos[3 * j] - c[0]) ** 2 + (pos[3 * j + 1] - c[1]) ** 2
      + (pos[3 * j + 2] - c[2]) ** 2;
    centres.push(Array.from(pos.slice(0, 3)));
    const best = new Float64Array(count).fill(Infinity);
    while (centres.length < n) { // k-means++: far points more likely
      let total = 0;
      for (let i = 0; i < count; i++) {
        best[i] = Math.min(best[i], dist2(at(i), centres.at(-1)));
        total += best[i];
      }
      let r = random() * total;
      let pick = count - 1;
      for (let i = 0; i < count; i++) { r -= best[i]; if (r <= 0) { pick = i; break; } }
      centres.push(Array.from(pos.slice(3 * at(pick), 3 * at(pick) + 3)));
    }
    const owner = new Int32Array(count);
    for (let iter = 0; iter < 10; iter++) {
      const sums = centres.map(() => [0, 0, 0, 0]);
      for (let i = 0; i < count; i++) {
        const p = at(i);
        let b = 0;
        for (let c = 1; c < n; c++) if (dist2(p, centres[c]) < dist2(p, centres[b])) b = c;
        owner[i] = b;
        for (let j = 0; j < 3; j++) sums[b][j] += pos[3 * p + j];
        sums[b][3] += 1;
      }
      sums.forEach((s, c) => { if (s[3]) centres[c] = [s[0] / s[3], s[1] / s[3], s[2] / s[3]]; });
    }
    const chosen = centres.map((c) => {
      let b = -1;
      for (let j = 0; j < all; j++) if (b < 0 || dist2(j, c) < dist2(b, c)) b = j; // every point
      return ids[b];
    });
    this.stop();
    this.lanes = [];
    this.add([...new Set(chosen)]);
    this.app.status(`A kit of ${this.lanes.length} sounds from distinct regions of the map`);
  }

  async load(id) {
    if (!this.buffers.has(id)) this.buffers.set(id, await this.app.player.load(id));
    return this.buffers.get(id);
  }

  async play() {
    if (!this.lanes.length || this.timer !== null || this.starting) return;
    const starting = {}; // this start, until its sounds are loaded: stop() or a second play meets it
    this.starting = starting;
    this.render();
    const loaded = await Promise.allSettled(this.lanes.map((l) => this.load(l.id)));
    const ctx = this.app.player.context();
    await ctx.resume().catch(() => {});
    if (this.starting !== starting) return; // stopped while the sounds were loading
    this.starting = null;
    const failed = loaded.filter((r) => r.status === 'rejected');
    if (failed.length === loaded.length) {
      this.app.status(`Cannot play the kit: ${failed[0].reason.message}`, 'error');
      this.render();
      return;
    }
    if (failed.length) { // the other lanes play
      this.app.status(`${failed.length} of the kit's sounds cannot be played: ${failed[0].reason.message}`, 'error');
    }
    this.next = ctx.currentTime + 0.05;
    this.step = 0;
    this.timer = setInterval(() => this.schedule(), WAKE_MS);
    this.schedule();
    this.render();
  }

  /** Play, or stop what plays or is about to (the Play button, the key k). */
  playOrStop() {
    return this.timer === null && this.starting === null ? this.play() : this.stop();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.starting = null; // a start still loading its sounds does not begin
    this.render();
  }

  /** Book every hit of the next LOOKAHEAD seconds on the audio clock. */
  schedule() {
    const ctx = this.app.player.context();
    const sixteenth = 60 / this.tempo / 4;
    while (this.next < ctx.currentTime + LOOKAHEAD) {
      const late = this.step % 2 ? (this.swing - 0.5) * 2 * sixteenth : 0;
      for (const lane of this.lanes) {
        const buffer = this.buffers.get(lane.id);
        if (!lane.steps[this.step] || !buffer) continue;
        const source = ctx.createBufferSource();
        source.buffer = buffer;
        const gain = ctx.createGain();
        gain.gain.value = lane.volume;
        source.connect(gain).connect(ctx.destination);
        source.start(this.next + late);
        this.app.state.kit.scheduled += 1;
      }
      this.app.state.kit.step = this.step;
      this.step = (this.step + 1) % STEPS;
      this.next += sixteenth;
    }
  }

  toJSON() {
    return { name: $('kit-name').value.trim() || 'kit', tempo: this.tempo, swing: this.swing,
      lanes: this.lanes.map((l) => ({ id: l.id, steps: l.steps, volume: l.volume })) };
  }

  async exportZip() {
    try {
      const { blob, filename } = await api.postForBlob('/api/kits/export', this.toJSON());
      saveBlob(blob, filename);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  /** A kit.json (as exported) back into the builder; the sounds must be in this atlas. Each
   *  lane's sound is found by its path (an id may name another file since the export: ids of
   *  deleted files are given to new ones), by its id only when the lane has no path. */
  async importFile(file) {
    try {
      const kit = JSON.parse(await file.text());
      if (!Array.isArray(kit.lanes) || !kit.lanes.length) throw new Error('no lanes in this kit.json');
      const lanes = kit.lanes.slice(0, MAX_LANES).map((l, i) => {
        const hasPath = typeof l.path === 'string' && l.path !== '';
        if ((!hasPath && !Number.isInteger(l.id)) || !Array.isArray(l.steps) || l.steps.length !== STEPS) {
          throw new Error(`lane ${i + 1}: a path or an id and ${STEPS} steps`);
        }
        return { id: l.id, path: hasPath ? l.path : null, steps: l.steps.map(Boolean),
          volume: Math.min(1, Math.max(0, Number(l.volume ?? 0.8))) };
      });
      const found = await Promise.all(lanes.map((l) => (l.path === null ? l.id : findByPath(l.path))));
      const byId = lanes.filter((l) => l.path === null).map((l) => l.id);
      const { missing } = byId.length ? await api.lookupSamples(byId) : { missing: [] };
      const gone = [];
      const moved = [];
      lanes.forEach((l, i) => {
        if (l.path === null ? missing.includes(l.id) : found[i] === null) {
          gone.push(l.path === null ? `lane ${i + 1}: sample ${l.id}` : `lane ${i + 1}: ${l.path}`);
        } else if (found[i] !== l.id) {
          const was = Number.isInteger(l.id) ? ` (was ${l.id})` : '';
          moved.push(`lane ${i + 1}: ${l.path} is now sample ${found[i]}${was}`);
        }
      });
      if (gone.length) throw new Error(`not in this atlas: ${gone.join('; ')}`);
      this.stop();
      this.lanes = lanes.map((l, i) => ({ id: found[i], steps: l.steps, volume: l.volume }));
      this.tempo = Number(kit.tempo) || 120;
      this.swing = Math.min(0.75, Math.max(0.5, Number(kit.swing) || 0.5));
      $('kit-name').value = kit.name || 'kit';
      this.render();
      const also = moved.length ? `; ${moved.join('; ')}` : '';
      this.app.status(`Imported the kit ${kit.name || ''} (${lanes.length} lanes)${also}`);
    } catch (error) {
      this.app.status(`Cannot import ${file.name}: ${error.message}`, 'error');
    }
  }

  render() {
    // the control that has the focus is made anew: the new one gets it (a step toggled from
    // the keyboard keeps the focus where it was, not back at the top of the page)
    const active = $('kit-lanes').contains(document.activeElement) ? document.activeElement : null;
    const focused = active && { lane: active.closest('li')?.dataset.lane,
      label: active.getAttribute('aria-label') };
    $('kit-tempo').value = String(this.tempo);
    $('kit-swing').value = String(this.swing);
    $('kit-play').textContent = this.timer === null && this.starting === null ? '▶ Play' : '■ Stop';
    for (const id of ['kit-play', 'kit-export', 'kit-clear']) $(id).disabled = !this.lanes.length;
    $('kit-lanes').replaceChildren(...this.lanes.map((lane, i) => {
      const name = this.app.knownPath(lane.id);
      const label = el('span', { className: 'name', textContent: name ? basename(name) : `sample ${lane.id}`,
        title: name || '', onclick: () => { this.focus = i; this.render(); } });
      if (!name) this.app.pathOf(lane.id).then((p) => { label.textContent = basename(p); label.title = p; }).catch(() => {});
      return el('li', { className: i === this.focus ? 'focus' : '', dataset: { lane: String(i), id: String(lane.id) } },
        el('button', { type: 'button', className: 'small', textContent: '▶', ariaLabel: 'Play this lane\'s sound',
          onclick: () => { this.focus = i; this.app.playSample(lane.id); this.render(); } }),
        label,
        el('span', { className: 'steps' }, ...lane.steps.map((on, s) => el('button', {
          type: 'button', className: `step${on ? ' on' : ''}${s % 4 === 0 ? ' beat' : ''}`,
          dataset: { step: String(s) }, ariaLabel: `Lane ${i + 1} step ${s + 1}`,
          ariaPressed: String(on), onclick: () => this.toggle(i, s) }))),
        el('input', { type: 'range', min: '0', max: '1', step: '0.05', value: String(lane.volume),
          ariaLabel: `Lane ${i + 1} volume`, oninput: (e) => { lane.volume = Number(e.target.value); this.publish(); } }),
        el('button', { type: 'button', className: 'small', textContent: '↻', title: 'Its nearest neighbour instead (key n)',
          ariaLabel: `Swap lane ${i + 1}`, onclick: () => this.swap(i) }),
        el('button', { type: 'button', className: 'small', textContent: '×', ariaLabel: `Remove lane ${i + 1}`,
          onclick: () => this.remove(i) }));
    }));
    if (focused) {
      const li = $('kit-lanes').querySelector(`li[data-lane="${focused.lane}"]`)
        ?? $('kit-lanes').lastElementChild; // a lane removed: the one now last
      const again = li && [...li.querySelectorAll('button, input')]
        .find((e) => e.getAttribute('aria-label') === focused.label);
      (again ?? li?.querySelector('button') ?? $('kit-add-selected'))?.focus();
    }
    this.publish();
  }
}
