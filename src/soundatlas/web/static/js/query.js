// Query by example: an audio file dropped or chosen is embedded by the server with the model
// shown (never added to the atlas); its trajectory and point are drawn and its nearest sounds
// listed. The upload itself can be played (decoded here) while its trajectory is traced.

import * as api from './api.js';
import { sounding } from './points.js';
import { RenderedSound } from './rendered.js';
import { seconds } from './panel.js';

const $ = (id) => document.getElementById(id);

export class QueryByExample {
  /** ``app``: the page's shared pieces (state, view, player, lists, k, nearSpace, world,
   *  worldOf, show, status). */
  constructor(app) {
    this.app = app;
    this.file = null;
    this.buffer = null; // the upload, decoded for playing
    this.token = 0;
    this.mosaicSound = new RenderedSound(app.player, 'mosaic', 'mosaic');
  }

  async run(file) {
    const { state, view, player, lists } = this.app;
    const token = ++this.token;
    Object.assign(this, { file, buffer: null });
    this.forgetMosaic();
    // the last upload's answer goes now: its buttons would act on this file meanwhile
    this.forgetAnswer();
    $('query-error').hidden = true;
    $('query-status').textContent = `Placing ${file.name} on the map of ${state.model}…`;
    try {
      const answer = await api.query(state.model, file, this.app.k(), this.app.nearSpace());
      if (token !== this.token) return;
      state.query = answer;
      const frames = Float32Array.from(answer.trajectory.flat());
      const n = answer.trajectory.length;
      // its sounding part, as for a sample's trajectory
      view.setPath('query', sounding(this.app.world(frames, n, answer.point.length),
        answer.sounding), '#ffd166', '#ef476f');
      view.setMarker('query:point', this.app.worldOf(answer.point), '#ffd166', 'Q', 24);
      lists.query.fill(answer.neighbours, answer.space);
      this.app.show(lists.query);
      player.prefetch(lists.query.ids);
      $('query-result').hidden = false;
      $('query-library').textContent = this.app.libraryName?.() || 'LIBRARY';
      $('query-status').textContent = `${answer.file}: ${seconds(answer.duration)}`
        + `${answer.truncated ? ' (only the start analysed)' : ''}, on the map of ${answer.model} (Q).`
        + `${answer.silent ? ' It is silent: nothing in it sounds, so its place and its nearest sounds say nothing of it.' : ''}`;
    } catch (error) {
      if (token !== this.token) return;
      this.forgetResult(); // another upload's result: its buttons must not act on this file
      $('query-error').textContent = error.message; // the server's own words (400, 413)
      $('query-error').hidden = false;
    }
  }

  /** "Mosaic this": the upload rebuilt from the library's grains (POST .../mosaic), played and
   *  offered as a download. */
  async mosaic() {
    const { state } = this.app;
    if (!this.file) return;
    this.forgetMosaic();
    const answer = await this.mosaicSound.fetch(
      (signal) => api.mosaic(state.model, this.file, $('mosaic-self').checked, signal),
      `Rebuilding ${this.file.name} from the library…`);
    if (!answer) return;
    state.mosaic = { ...answer.summary, bytes: answer.blob.size, selfExcluded: answer.selfExcluded };
    $('mosaic-status').textContent = `${answer.summary.duration.toFixed(2)} s from `
      + `${answer.summary.n_samples_used} sounds of the library`
      + `${answer.selfExcluded ? ' (the same sound in the library left out)' : ''}.`;
    this.playMosaic();
  }

  playMosaic() {
    this.mosaicSound.play();
  }

  forgetMosaic() {
    this.mosaicSound.forget(); // a mosaic still on its way is of another upload or model: dropped
    this.app.state.mosaic = null;
    $('mosaic-status').textContent = '';
  }

  clear() {
    this.token++;
    this.forgetResult();
    $('query-file').value = '';
  }

  /** No upload, and nothing of one shown: its point, path, neighbours, mosaic and buttons. */
  forgetResult() {
    this.forgetMosaic();
    Object.assign(this, { file: null, buffer: null });
    this.forgetAnswer();
    $('query-status').textContent = '';
  }

  /** The server's answer for an upload (its point, path, neighbours) no longer shown, and the
   *  upload no longer playing. */
  forgetAnswer() {
    if (this.app.player.current?.key === 'query') this.app.player.stop();
    this.app.state.query = null;
    this.app.lists.query.fill([]);
    this.app.view.removeAll('query');
    $('query-result').hidden = true;
  }

  async play() {
    const file = this.file;
    if (!file) return;
    try {
      if (!this.buffer) {
        const buffer = await this.app.player.decode(await file.arrayBuffer());
        if (this.file !== file) return; // another upload (or none) came meanwhile
        this.buffer = buffer;
      }
      this.app.player.playBuffer(this.buffer, 'query');
    } catch (error) {
      if (this.file !== file) return;
      this.app.status(`This browser cannot play ${file.name}: ${error.message}`, 'error');
    }
  }

  /** Let files be dropped on ``node`` (drags of the page's own list entries are ignored). */
  acceptDrops(node) {
    const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes('Files');
    node.addEventListener('dragover', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      node.classList.add('dragging');
    });
    node.addEventListener('dragleave', () => node.classList.remove('dragging'));
    node.addEventListener('drop', (event) => {
      node.classList.remove('dragging');
      if (!hasFiles(event)) return;
      event.preventDefault();
      const file = event.dataTransfer.files[0];
      if (file && this.app.state.ready) this.run(file);
    });
  }
}
