// Low-latency playback through Web Audio: samples fetched once, decoded once, kept in a bounded
// cache (least recently used goes first); a new sound stops the previous one with a short fade.

import { audioURL } from './api.js';

const MAX_CACHED_BYTES = 256 * 2 ** 20;
const FADE_S = 0.01;

export class Player {
  /** onStart({id, key, startTime, duration}) is called when a sound really starts. */
  constructor({ onStart = () => {}, onBlocked = () => {} } = {}) {
    this.onStart = onStart;
    this.onBlocked = onBlocked; // the browser wants a gesture before sound
    this.ctx = null;
    this.cache = new Map(); // id -> AudioBuffer, oldest first
    this.pending = new Map(); // id -> Promise<AudioBuffer>
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

  /** The decoded sound of sample ``id`` (fetched and decoded at most once while cached). */
  load(id) {
    const cached = this.cache.get(id);
    if (cached) {
      this.cache.delete(id); // most recently used goes last
      this.cache.set(id, cached);
      return Promise.resolve(cached);
    }
    if (!this.pending.has(id)) {
      const promise = fetch(audioURL(id))
        .then((r) => {
          if (!r.ok) throw new Error(`sample ${id}: audio answered ${r.status}`);
          return r.arrayBuffer();
        })
        .then((data) => this.decode(data))
        .then((buffer) => this.remember(id, buffer))
        .finally(() => this.pending.delete(id));
      this.pending.set(id, promise);
    }
    return this.pending.get(id);
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
   *  last one). Resolves true when it started. */
  async play(id, key = 'sample') {
    const token = ++this.token;
    const buffer = await this.load(id);
    if (token !== this.token) return false;
    return this.start(buffer, { id, key });
  }

  /** Play a decoded buffer (an upload) under ``key``. */
  async playBuffer(buffer, key) {
    ++this.token;
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
      if (this.current === current) this.current = null;
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
