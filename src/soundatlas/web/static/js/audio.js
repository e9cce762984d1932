// Low-latency playback through Web Audio: samples fetched once, decoded once, kept in a bounded
// cache (least recently used goes first); a new sound stops the previous one with a short fade.
// Files the browser cannot decode (Chromium: AIFF, W64, CAF, AU...) are asked of the server as
// WAV (?format=wav): at once when the path is known, when the file's type is one the browser
// says it cannot play, or when decoding the original fails.

import { audioURL } from './api.js';

const MAX_CACHED_BYTES = 256 * 2 ** 20;
const FADE_S = 0.01;
// extensions of formats libsndfile reads and Chromium's decodeAudioData does not
const NEEDS_WAV = new Set(['aif', 'aiff', 'aifc', 'w64', 'caf', 'au', 'snd', 'sd2', 'voc', 'iff',
  '8svx', 'svx', 'sds', 'xi', 'sph']);
const probe = typeof Audio === 'function' ? new Audio() : null;

/** False when the browser says it cannot play a file of this Content-Type at all. */
function playable(contentType) {
  const type = (contentType || '').split(';')[0].trim();
  return !type || !probe || probe.canPlayType(type) !== '';
}

/** The response, or an Error with the server's own message ({"error": ...}). */
async function checked(id, response) {
  if (response.ok) return response;
  let message = `audio answered ${response.status}`;
  try {
    message = (await response.json()).error || message;
  } catch { /* not JSON: keep the status */ }
  throw new Error(`sample ${id}: ${message}`);
}

export class Player {
  /** onStart({id, key, startTime, duration}) is called when a sound really starts.
   *  pathOf(id): the sample's path when known (else null), to ask for WAV at once for an
   *  extension the browser cannot decode. */
  constructor({ onStart = () => {}, onBlocked = () => {}, pathOf = () => null } = {}) {
    this.onStart = onStart;
    this.onBlocked = onBlocked; // the browser wants a gesture before sound
    this.pathOf = pathOf;
    this.ctx = null;
    this.cache = new Map(); // id -> AudioBuffer, oldest first
    this.pending = new Map(); // id -> Promise<AudioBuffer>
    this.loading = null; // {id, controller}: the download play() started and may drop
    this.bytes = 0;
    this.current = null;
    this.token = 0;
  }

  context() {
    if (!this.ctx) this.ctx = new AudioContext({ latencyHint: 'interactive' });
    return this.ctx;
  }

  get running() {
    return this.ctx !== null && this.ctx.state === 'running';
  }

  /** Call from a user gesture: browsers only let a page make sound after one. */
  unlock() {
    const ctx = this.context();
    if (ctx.state !== 'running') ctx.resume().catch(() => {});
  }

  /** The decoded sound of sample ``id`` (fetched and decoded at most once while cached).
   *  ``forPlay``: a download this starts is the one :meth:`play` drops when another sample is
   *  asked for before it arrives (a sweep over a dense map asks for dozens). */
  load(id, forPlay = false) {
    const cached = this.cache.get(id);
    if (cached) {
      this.cache.delete(id); // most recently used goes last
      this.cache.set(id, cached);
      return Promise.resolve(cached);
    }
    if (!this.pending.has(id)) {
      const controller = forPlay ? new AbortController() : null;
      const promise = this.fetchDecoded(id, controller?.signal)
        .then((buffer) => this.remember(id, buffer))
        .finally(() => {
          this.pending.delete(id);
          if (this.loading?.controller === controller) this.loading = null;
        });
      this.pending.set(id, promise);
      if (controller) this.loading = { id, controller };
    }
    return this.pending.get(id);
  }

  /** Fetch and decode sample ``id``: the original file, else the server's WAV of it. */
  async fetchDecoded(id, signal = undefined) {
    const path = this.pathOf(id);
    const ext = path ? path.split('.').pop().toLowerCase() : '';
    if (!NEEDS_WAV.has(ext)) {
      const response = await checked(id, await fetch(audioURL(id), { signal }));
      if (playable(response.headers.get('content-type'))) {
        try {
          return await this.decode(await response.arrayBuffer());
        } catch { /* the browser could not decode it after all: the WAV below */ }
      } else if (response.body) {
        response.body.cancel().catch(() => {}); // not worth downloading
      }
    }
    const response = await checked(id, await fetch(audioURL(id, 'wav'), { signal }));
    return this.decode(await response.arrayBuffer());
  }

  decode(data) {
    return this.context().decodeAudioData(data);
  }

  remember(id, buffer) {
    this.cache.set(id, buffer);
    this.bytes += buffer.length * buffer.numberOfChannels * 4;
    for (const [oldId, old] of this.cache) {
      if (this.bytes <= MAX_CACHED_BYTES || oldId === id) break;
      this.cache.delete(oldId);
      this.bytes -= old.length * old.numberOfChannels * 4;
    }
    return buffer;
  }

  /** Fetch and decode in the background, a few at a time. */
  prefetch(ids) {
    const queue = ids.filter((id) => !this.cache.has(id) && !this.pending.has(id)).slice(0, 20);
    const next = () => {
      const id = queue.shift();
      if (id !== undefined) this.load(id).catch(() => {}).then(next);
    };
    for (let i = 0; i < 3; i++) next();
  }

  /** Play sample ``id``; only the latest call plays (a quick hover over many points plays the
   *  last one). Resolves true when it started. ``onEnded`` is called when it plays to its end
   *  (not when another sound stops it). */
  async play(id, key = 'sample', onEnded = null) {
    const token = ++this.token;
    if (this.loading && this.loading.id !== id) this.loading.controller.abort(); // not heard
    let buffer;
    try {
      buffer = await this.load(id, true);
    } catch (error) {
      if (token !== this.token) return false; // another sound was asked for: its download dropped
      throw error;
    }
    if (token !== this.token) return false;
    return this.start(buffer, { id, key, onEnded });
  }

  /** Play a decoded buffer (an upload) under ``key``. */
  async playBuffer(buffer, key) {
    ++this.token;
    this.loading?.controller.abort(); // a sample's download no one will hear
    return this.start(buffer, { id: null, key });
  }

  async start(buffer, info) {
    const ctx = this.context();
    if (ctx.state !== 'running') {
      // autoplay allowed: resume() settles quickly; otherwise wait for a gesture, silently
      await Promise.race([ctx.resume().catch(() => {}), new Promise((r) => setTimeout(r, 200))]);
      if (ctx.state !== 'running') {
        this.onBlocked();
        return false;
      }
    }
    this.stop();
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    const gain = ctx.createGain();
    source.connect(gain).connect(ctx.destination);
    source.start();
    const current = { ...info, source, gain, startTime: ctx.currentTime, duration: buffer.duration };
    source.onended = () => {
      if (this.current !== current) return; // stopped for another sound
      this.current = null;
      current.onEnded?.();
    };
    this.current = current;
    this.onStart(current);
    return true;
  }

  stop() {
    const current = this.current;
    if (!current) return;
    this.current = null;
    const t = this.ctx.currentTime;
    current.gain.gain.setTargetAtTime(0, t, FADE_S / 3);
    current.source.stop(t + FADE_S);
  }

  /** Seconds into the sound now playing under ``key``, or null. */
  elapsed(key) {
    if (!this.current || this.current.key !== key) return null;
    const t = this.ctx.currentTime - this.current.startTime;
    return t <= this.current.duration ? t : null;
  }
}
