// The page's only way to the server: JSON, little-endian binary arrays, and errors that carry
// the server's own message ({"error": "..."}).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function check(response) {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch { /* not JSON: keep the status line */ }
  throw new ApiError(response.status, message);
}

/** GET ``url`` as JSON; ``init``: fetch's options (an AbortSignal to drop it, say). */
export async function getJSON(url, init = undefined) {
  return (await check(await fetch(url, init))).json();
}

export async function postJSON(url, body) {
  const response = await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return (await check(response)).json();
}

/** Send JSON with ``method`` (PUT, PATCH, DELETE...) and answer the JSON reply. */
export async function sendJSON(method, url, body = undefined) {
  const response = await fetch(url, {
    method, headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await check(response)).json();
}

export async function postForm(url, form) {
  return (await check(await fetch(url, { method: 'POST', body: form }))).json();
}

/** POST JSON and answer {blob, filename} from an attachment (Content-Disposition). */
export async function postForBlob(url, body) {
  return attachment(await fetch(url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  }));
}

/** {blob, filename} of an attachment response (errors: the server's message). */
async function attachment(response) {
  await check(response);
  const disposition = response.headers.get('content-disposition') || '';
  const exact = /filename\*=UTF-8''([^;]+)/i.exec(disposition); // RFC 5987: any characters
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  const filename = exact ? decodeURIComponent(exact[1]) : plain ? plain[1] : 'export';
  return { blob: await response.blob(), filename };
}

/** GET a binary body as an ArrayBuffer, calling onProgress(fraction, bytes) while it streams. */
export async function getBytes(url, onProgress = null) {
  const response = await check(await fetch(url));
  const total = Number(response.headers.get('content-length')) || 0;
  if (!onProgress || !response.body || !total) {
    return { buffer: await response.arrayBuffer(), headers: response.headers };
  }
  const bytes = new Uint8Array(total);
  const reader = response.body.getReader();
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes.set(value, received);
    received += value.length;
    onProgress(received / total, received);
  }
  return { buffer: bytes.buffer, headers: response.headers };
}

const model = (name) => `/api/models/${encodeURIComponent(name)}`;

/** Every sample id, ascending (the order of label codes). */
export async function loadSampleIds() {
  const { buffer } = await getBytes('/api/samples/ids');
  return new Int32Array(buffer);
}

/** A model's points: {ids: Int32Array (ascending), points: Float32Array n x dims, dims,
 *  pitchAxis: the coordinate that is a measured pitch, or null}. */
export async function loadPoints(name, onProgress) {
  const { buffer, headers } = await getBytes(`${model(name)}/points`, onProgress);
  const count = Number(headers.get('x-count'));
  const dims = Number(headers.get('x-dims'));
  const axis = headers.get('x-pitch-axis');
  return {
    ids: new Int32Array(buffer, 0, count),
    points: new Float32Array(buffer, count * 4, count * dims),
    dims,
    pitchAxis: axis === null ? null : Number(axis),
  };
}

/** A label's sorted values and each sample's code (-1: none), aligned with loadSampleIds(). */
export async function loadLabel(key) {
  const body = await getJSON(`/api/labels/${encodeURIComponent(key)}`);
  return { key, values: body.values, codes: base64Int32(body.codes) };
}

/** A sample's frames on the map: {frames: Float32Array n x dims, nFrames, dims, frameRate,
 *  sounding: [first, last] frame of its sounding part}. */
export async function loadTrajectory(name, id) {
  const { buffer, headers } = await getBytes(`${model(name)}/trajectory/${id}`);
  return {
    frames: new Float32Array(buffer),
    nFrames: Number(headers.get('x-frames')),
    dims: Number(headers.get('x-dims')),
    frameRate: Number(headers.get('x-frame-rate')),
    sounding: [Number(headers.get('x-sounding-first')), Number(headers.get('x-sounding-last'))],
  };
}

/** The ``k`` samples nearest ``id``; ``space``: 'similarity' (sound and pitch), 'timbre' or 'map'
 *  (the server falls back to the map for 'similarity' where the model has no vectors yet). */
export const neighbours = (name, id, k, space = 'similarity') => getJSON(
  `${model(name)}/neighbours/${id}?k=${k}${space === 'similarity' ? '' : `&space=${space}`}`);
/** a - b + c and its ``k`` nearest, in ``space`` as ``neighbours``'s. */
export const analogy = (name, a, b, c, k, space = 'similarity') => postJSON(`${model(name)}/analogy`,
  space === 'similarity' ? { a, b, c, k } : { a, b, c, k, space });
export const sample = (id) => getJSON(`/api/samples/${id}`);
/** A sample's file as it is (HTTP Range), or with ``format`` 'wav' decoded by the server to
 *  16-bit PCM WAV (for AIFF, W64, CAF, AU... that browsers cannot decode). */
export const audioURL = (id, format = null) => (format
  ? `/api/samples/${id}/audio?format=${encodeURIComponent(format)}`
  : `/api/samples/${id}/audio`);
export const cqtURL = (id) => `/api/samples/${id}/cqt.png`;

/** Why a sample's CQT image did not load (a damaged feature file names itself and its repair),
 *  or null when it loads now. */
export async function cqtProblem(id) {
  try {
    await check(await fetch(cqtURL(id)));
    return null;
  } catch (error) {
    return error.message;
  }
}

/** An upload placed on the map, and its ``k`` nearest in ``space`` as ``neighbours``'s. */
export function query(name, file, k, space = 'similarity') {
  checkUpload(file);
  const form = new FormData();
  form.append('file', file, file.name);
  return postForm(`${model(name)}/query?k=${k}${space === 'similarity' ? '' : `&space=${space}`}`, form);
}

let uploadLimit = Infinity;

/** The server's upload limit in bytes (``/api/atlas``'s ``max_upload_bytes``). A larger file is
 *  refused here, before it is sent: the server refuses it too, but a browser still sending a
 *  large body often sees the connection closed ("Failed to fetch"), not the server's 413. */
export function setUploadLimit(bytes) {
  uploadLimit = bytes > 0 ? bytes : Infinity;
}

function checkUpload(file) {
  if (file.size > uploadLimit) {
    const mb = (n) => `${(n / 2 ** 20).toFixed(1)} MB`;
    throw new Error(`${file.name} is ${mb(file.size)}: larger than the server's upload limit of `
      + `${uploadLimit} bytes (${mb(uploadLimit)})`);
  }
}

/** The most ids one POST /api/samples/lookup takes. */
export const MAX_LOOKUP = 10000;

/** Paths and labels of many samples, one request per MAX_LOOKUP ids instead of one per id:
 *  {items: [{id, path, labels}] in the order asked (a repeated id once), missing: [ids the
 *  atlas does not hold]}. ``ids``: an array or typed array of sample ids. */
export async function lookupSamples(ids) {
  const unique = [...new Set(Array.from(ids, Number))];
  const items = [];
  const missing = [];
  for (let i = 0; i < unique.length; i += MAX_LOOKUP) {
    const body = await postJSON('/api/samples/lookup', { ids: unique.slice(i, i + MAX_LOOKUP) });
    for (const item of body.items) items.push(item);
    for (const id of body.missing) missing.push(id);
  }
  return { items, missing };
}

/** Search by path substring, label filters [[key, value], ...], a collection (or null) and
 *  loop filters {tempo: 'MIN-MAX', key, relative}: {total, ids, items}. */
export function search(q, filters, collection = null, loops = {}, { limit = 50, signal } = {}) {
  const params = new URLSearchParams({ q, limit: String(limit) });
  for (const [key, value] of filters) params.append('label', `${key}:${value}`);
  if (collection) params.set('collection', collection);
  if (loops.tempo) params.set('tempo', loops.tempo);
  if (loops.key) {
    params.set('key', loops.key);
    if (loops.relative) params.set('relative', 'true');
  }
  return getJSON(`/api/samples?${params}`, { signal });
}

function base64Int32(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return new Int32Array(bytes.buffer);
}

/** A rendered WAV answer: {blob, filename, summary (X-Render), selfExcluded (mosaic)}. */
async function wavAnswer(response) {
  const answer = await attachment(response);
  const summary = JSON.parse(response.headers.get('x-render') || '{}');
  const selfExcluded = Number(response.headers.get('x-self-excluded') || 0);
  return { ...answer, summary, selfExcluded };
}

/** Render a path (POST /api/models/{m}/synth): body {ids | points, durations, glide, grain};
 *  ``signal`` (an AbortSignal) hangs up, which stops the render. */
export async function synth(name, body, signal = undefined) {
  return wavAnswer(await fetch(`${model(name)}/synth`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    signal,
  }));
}

/** Rebuild an uploaded ``file`` from the library's grains (POST /api/models/{m}/mosaic);
 *  ``signal`` (an AbortSignal) hangs up, which stops the render. */
export async function mosaic(name, file, excludeSelf = true, signal = undefined) {
  checkUpload(file);
  const form = new FormData();
  form.append('file', file, file.name);
  return wavAnswer(await fetch(`${model(name)}/mosaic?exclude_self=${excludeSelf}`,
    { method: 'POST', body: form, signal }));
}
