// Analogies: the user picks A, B and C (on the map, or the selected sample); the server answers
// A - B + C and the sounds nearest it, marked on the map and listed.

import * as api from './api.js';
import { basename } from './panel.js';

const $ = (id) => document.getElementById(id);
const SLOTS = ['a', 'b', 'c'];
export const SLOT_COLOURS = { a: '#ff7b72', b: '#79c0ff', c: '#d2a8ff' };

export class Analogy {
  /** ``app``: the page's shared pieces (state, view, player, lists, k, worldOf, indexOf,
   *  pathOf, show). */
  constructor(app) {
    this.app = app;
    this.slots = { a: null, b: null, c: null };
    this.token = 0;
    this.lastPicked = null; // the sample a click on the map last put in a slot
  }

  get complete() {
    return SLOTS.every((s) => this.slots[s] !== null);
  }

  /** 'analogy': clicks on the map fill A, B, C; 'explore': clicks select. */
  setMode(mode) {
    this.app.state.mode = mode;
    $('analogy-mode').setAttribute('aria-pressed', String(mode === 'analogy'));
    $('map').classList.toggle('picking', mode === 'analogy');
    if (mode === 'analogy') $('analogy').hidden = false;
    this.render();
  }

  /** Put sample ``id`` in ``slot`` (null: the next empty one; after C, start over at A). */
  setSlot(slot, id) {
    if (!slot) {
      if (id === this.lastPicked) {
        // a double-click (to fly there) is two clicks: a - a + c is c, and a third slot
        // filled again starts a new analogy from it
        this.app.status('Pick another sample: this one is the last one picked');
        return;
      }
      this.lastPicked = id;
      slot = SLOTS.find((s) => this.slots[s] === null);
      if (!slot) {
        Object.assign(this.slots, { a: null, b: null, c: null });
        this.clearResult();
        slot = 'a';
      }
    }
    this.slots[slot] = id;
    $('analogy').hidden = false;
    this.placeMarkers();
    this.render();
    if (this.complete) this.run();
  }

  /** Letters A, B, C on the map (again after a model switch). */
  placeMarkers() {
    const { view, indexOf } = this.app;
    for (const slot of SLOTS) {
      const i = this.slots[slot] === null ? -1 : indexOf(this.slots[slot]);
      if (i >= 0) view.setMarker(`analogy:${slot}`, view.position(i), SLOT_COLOURS[slot], slot.toUpperCase());
      else view.remove(`analogy:${slot}`);
    }
  }

  render() {
    for (const li of document.querySelectorAll('.slots li')) {
      const slot = li.dataset.slot;
      const id = this.slots[slot];
      const name = li.querySelector('.slot-name');
      name.textContent = id === null ? '–' : `sample ${id}`;
      if (id !== null) {
        this.app.pathOf(id).then((path) => {
          if (this.slots[slot] === id) name.textContent = basename(path);
        }, () => {});
      }
    }
    const next = SLOTS.find((s) => this.slots[s] === null);
    $('analogy-prompt').textContent = this.app.state.mode !== 'analogy'
      ? 'Press Analogy (or a) to pick on the map, or use the A, B, C buttons of a sample.'
      : next ? `Click a point for ${next.toUpperCase()}.` : 'Click a point to start again at A.';
  }

  async run() {
    const { state, view, player, lists } = this.app;
    const { a, b, c } = this.slots;
    const token = ++this.token;
    $('analogy-error').hidden = true;
    try {
      const answer = await api.analogy(state.model, a, b, c, this.app.k(), this.app.nearSpace());
      if (token !== this.token) return;
      state.analogy = { ...answer, a, b, c };
      view.setMarker('analogy:result', this.app.worldOf(answer.point), '#f2cc60', '=', 24);
      lists.analogy.fill(answer.neighbours, answer.space);
      this.app.show(lists.analogy);
      player.prefetch(lists.analogy.ids);
    } catch (error) {
      if (token !== this.token) return; // a later analogy (or Clear) has taken over
      this.clearResult(); // no stale answer under the error
      $('analogy-error').textContent = error.message;
      $('analogy-error').hidden = false;
    }
  }

  clear() {
    Object.assign(this.slots, { a: null, b: null, c: null });
    this.lastPicked = null;
    this.clearResult();
    this.app.view.removeAll('analogy');
    this.render();
    $('analogy').hidden = true;
  }

  clearResult() {
    this.token++;
    this.app.state.analogy = null;
    this.app.lists.analogy.fill([]);
    this.app.view.remove('analogy:result');
  }
}
