// A sound the server renders for the page (a path through the map, a mosaic): asked for,
// decoded, played, offered as a WAV download. The elements are found by a prefix:
// `${prefix}-status`, `${prefix}-error`, `${prefix}-result` and `${prefix}-download`.

const $ = (id) => document.getElementById(id);

export class RenderedSound {
  /** ``player``: the page's Player; ``key``: what playBuffer is told (traced by the page). */
  constructor(player, prefix, key) {
    Object.assign(this, { player, prefix, key, token: 0, answer: null, buffer: null, url: null,
      controller: null });
  }

  /** Ask for the sound with ``request(signal)`` (an api.js WAV answer; ``signal`` aborts it),
   *  saying ``pending`` while it comes. The answer once it is decoded and offered; null when it
   *  failed (the error shown, and given to ``onError``) or when ``forget`` was called meanwhile
   *  (the request is then aborted: the server stops the render and frees its render slot). */
  async fetch(request, pending, onError = () => {}) {
    this.forget();
    const token = this.token;
    const controller = new AbortController();
    this.controller = controller;
    $(`${this.prefix}-error`).hidden = true;
    $(`${this.prefix}-status`).textContent = pending;
    try {
      const answer = await request(controller.signal);
      if (token !== this.token) return null;
      const buffer = await this.player.decode(await answer.blob.arrayBuffer());
      if (token !== this.token) return null;
      Object.assign(this, { answer, buffer, url: URL.createObjectURL(answer.blob) });
      $(`${this.prefix}-download`).href = this.url;
      $(`${this.prefix}-download`).download = answer.filename;
      $(`${this.prefix}-result`).hidden = false;
      return answer;
    } catch (error) {
      if (token !== this.token) return null;
      $(`${this.prefix}-status`).textContent = '';
      $(`${this.prefix}-error`).textContent = error.message; // the server's own words
      $(`${this.prefix}-error`).hidden = false;
      onError(error);
      return null;
    }
  }

  /** Drop the sound, and any still on its way (it is of input that has changed since). */
  forget() {
    this.token++;
    if (this.player.current?.key === this.key) this.player.stop(); // the sound goes: so does it
    this.controller?.abort(); // a render nobody will hear holds the server's one render slot
    this.controller = null;
    if (this.url) URL.revokeObjectURL(this.url);
    Object.assign(this, { answer: null, buffer: null, url: null });
    $(`${this.prefix}-result`).hidden = true;
    $(`${this.prefix}-status`).textContent = ''; // "Rendering…", or the summary of what went
    $(`${this.prefix}-error`).hidden = true;
  }

  play() {
    if (this.buffer) this.player.playBuffer(this.buffer, this.key);
  }
}
