// soundatlas: the map page. One ES module plus a few under js/, no build step, no framework;
// it talks only to the JSON/binary API under /api (see /docs).
//
// Test and automation hook: window.soundatlas
//   state (read only):
//     ready        true once the points are drawn          model     the model shown
//     nPoints      points in the geometry                  colourBy  label key colouring them (null: none)
//     selected     the selected sample id, or null         neighbours  its neighbours' ids, as listed
//     trajectory   {id, nFrames, drawn: [first, last], points} of the selected sample's trajectory:
//                  its frames, the sounding part drawn, the drawn path's points; or null
//     matches      samples the search and filters match (null: no search)
//     dimmed       points dimmed because they do not match
//     lastPlayed   id of the last sample that started playing; each start also dispatches
//                  window event 'soundatlas:play' with detail {id, key} (id null and key
//                  'query', 'path' or 'mosaic' for a sound that is not a sample)
//     query        the last query-by-example answer (POST /api/models/{m}/query), or null
//     analogy      the last analogy answer (POST /api/models/{m}/analogy) plus {a, b, c}, or null
//     selection    ids selected by box, lasso or the Add buttons, ascending
//     path         {points, rendered}: the waypoints drawn in path mode, and the summary of their
//                  last rendering (POST /api/models/{m}/synth, plus {bytes}) or null
//     mosaic       summary of the last "Mosaic this" (POST .../mosaic, plus {bytes, selfExcluded})
//     osc          {out, in, connected, sent, received, cursor: {world, id}, error}: live control
//                  over OSC (soundatlas serve --osc-out/--osc-in; out/in null when off)
//     mode 'explore'|'analogy'|'path'   view '3d'|'2d'   moving: points are tweening to a new model
//     hint         the command to run when the atlas has no embeddings (else null)
//     error        a message when loading failed (else null)
//   screenPosition(id) -> {x, y}: client CSS pixels of the point (null: not on the map)
//   select(id) -> Promise, resolved once the panel shows it (null clears)
//   selectBox(x0, y0, x1, y1) -> ids whose points project inside that client rectangle
//   selectLasso([[x, y], ...]) -> ids whose points project inside that client polygon
//   kit          the kit builder: play() -> Promise (resolved once playing, or once it will not),
//                stop(), playOrStop(); its state is state.kit
//   pathOf(id) -> Promise of the sample's path (ids wanted together: one POST /api/samples/lookup)
//   playing() -> the key of the sound playing now ('sample', 'path', 'query', 'mosaic'), or null
//   curation (state.curation): {writable, selected: the selected sample's {id, starred, tags,
//                suggested, note, collections} once shown, collections: names, tags: {tag: n},
//                playing: {name, index} while a collection plays through, suggestion: the
//                selected sample's suggested {id, label, value, confidence} (for the colour-by
//                label), selectionSuggestions: {label, n} waiting to be accepted}
//   kit          {lanes: [{id, steps, volume}], tempo, swing, playing, scheduled: hits booked
//                on the audio clock so far, step: the last step booked, focus: the lane key n
//                swaps, swaps: how many swaps}

import * as THREE from 'three';
import { Analogy } from './js/analogy.js';
import { Curation } from './js/curation.js';
import { KitBuilder } from './js/kit.js';
import * as api from './js/api.js';
import { Player } from './js/audio.js';
import { UNIFORM, codeCss, hexToRgb, isNumeric, scheme as colourScheme } from './js/colours.js';
import { SampleList, basename, el, renderFacts, renderLegend } from './js/panel.js';
import { fromWorld, matchedPositions, maskOf, medianOf, normaliser, rowsOf, search, sounding, toWorld } from './js/points.js';
import { OscLink } from './js/osc.js';
import { PathTool } from './js/path.js';
import { QueryByExample } from './js/query.js';
import { FLAG, MapView } from './js/scene.js';
import { Selection } from './js/selection.js';

const $ = (id) => document.getElementById(id);

const state = {
  ready: false, model: null, nPoints: 0, colourBy: null, selected: null, neighbours: [],
  trajectory: null, matches: null, dimmed: 0, lastPlayed: null, query: null, analogy: null,
  selection: [], path: null, mosaic: null, osc: null, mode: 'explore', view: '3d', hint: null, error: null,
  get moving() { return view.moving; },
};

const data = {
  atlas: null,
  sampleIds: new Int32Array(0), // every sample, ascending: the order of label codes
  ids: new Int32Array(0), // the points' sample ids, ascending
  dims: 3, // coordinates per point of the model shown
  norm: null, // the model's points as served -> the map's unit-sized world
  rowOfPoint: new Int32Array(0), // point -> row in sampleIds
  labels: new Map(), // key -> {values, codes}
  scheme: null,
  filters: [], // [[key, value]]
  collection: null, // the collection the search is limited to, or null
  matchIds: null, // Int32Array ascending, or null: no search
  focusId: null, // the current entry of a list
  trajectory: null,
  info: new Map(), // id -> Promise of GET /api/samples/{id}
  paths: new Map(), // id -> path, from lists, lookups and sample facts (names and audio format)
  wanted: new Map(), // id -> [resolve] of paths asked for, looked up together (POST .../lookup)
};

const view = new MapView($('map'));
const player = new Player({ onStart: played, onBlocked: () => { $('sound-hint').hidden = false; },
  pathOf: (id) => data.paths.get(id) ?? null });
const listOptions = { onPlay: playFromList, onSelect: (id) => select(id), swatch: swatchOf,
  onItems: rememberPaths };
const lists = {
  neighbours: new SampleList($('neighbours'), listOptions),
  query: new SampleList($('query-neighbours'), listOptions),
  analogy: new SampleList($('analogy-results'), listOptions),
  matches: new SampleList($('match-list'), listOptions),
};
let activeList = lists.neighbours; // the list the arrow keys step through
// each request whose answer may arrive after a newer one: an answer that is not the latest is dropped
const tokens = { select: 0, filter: 0, model: 0, colour: 0 };
const k = () => Number($('k').value);
const nearSpace = () => $('near-space').value;
const worldOf = (values) => new THREE.Vector3().fromArray(toWorld(values, 1, values.length, data.norm));
const indexOf = (id) => search(data.ids, id);

// what the analogy and query tools share with the page
const app = {
  state, view, player, lists, k, nearSpace, worldOf, indexOf, pathOf, status, refreshFlags,
  world: (values, n, dims) => toWorld(values, n, dims, data.norm),
  fromWorld: (v) => fromWorld(v.toArray(), data.norm),
  dims: () => data.dims,
  playSample: (id) => playSample(id),
  libraryName: () => data.atlas?.library ?? null,
  select: (id) => select(id),
  onSelection: (ids) => { osc?.selection(ids); curation.dropSelectionSuggestions(); },
  pointIds: () => data.ids,
  show: (list) => { activeList = list; },
  labelsChanged: (keys) => labelsChanged(keys),
  infoChanged: (ids) => infoChanged(ids),
  filterCollection: () => data.collection,
  setFilterCollection: (name) => { data.collection = name || null; $('filter-collection').value = name || ''; applyFilter(); },
};
const analogy = new Analogy(app);
const query = new QueryByExample(app);
const selection = new Selection(app);
const pathTool = new PathTool(app);
const curation = new Curation(app);
app.knownPath = (id) => data.paths.get(id) ?? null;
const kit = new KitBuilder(app);
app.selection = selection;
app.playSample = (id, onEnded = null) => playSample(id, onEnded);
let osc = null; // the OSC link, once /api/atlas says where OSC goes

window.soundatlas = {
  state, screenPosition, select, pathOf,
  selectBox: (x0, y0, x1, y1) => selection.box(x0, y0, x1, y1),
  selectLasso: (points) => selection.lasso(points),
  kit,
  playing: () => player.current?.key ?? null,
};

// -- loading ---------------------------------------------------------------------------------

async function boot() {
  try {
    progress(0.02, 'Loading the atlas…');
    const atlas = await api.getJSON('/api/atlas');
    data.atlas = atlas;
    api.setUploadLimit(atlas.max_upload_bytes);
    $('library-name').textContent = atlas.library;
    document.title = `${atlas.library} · soundatlas`;
    const usable = atlas.models.filter((m) => m.n_embedded > 0);
    if (!usable.length) return showEmpty(atlas);
    fillSelects(atlas);
    fillLoopFilters(atlas);
    // the map does without what fails from here on but the points: the status line says what is missing
    const missing = [];
    await curation.load().catch((error) => missing.push(`tags, stars and collections (${error.message})`));
    osc = new OscLink(app, atlas.osc);
    progress(0.06, 'Loading the sample list…');
    data.sampleIds = await api.loadSampleIds();
    const first = usable.find((m) => m.name === atlas.default_model)
      || usable.reduce((a, b) => (b.n_embedded > a.n_embedded ? b : a));
    let failure = null;
    for (const model of [first, ...usable.filter((m) => m !== first)]) { // another model's map if one fails
      try {
        await showModel(model.name, false, (f, bytes) =>
          progress(0.1 + 0.75 * f, `Loading the map of ${model.name}… ${(bytes / 2 ** 20).toFixed(1)} MB`));
        break;
      } catch (error) {
        failure = failure || error;
        missing.push(`the map of ${model.name} (${error.message})`);
      }
    }
    if (state.model === null) throw failure || new Error('no map could be loaded');
    progress(0.9, 'Loading labels…');
    const key = defaultColourKey(atlas.labels);
    await colourBy(key).catch((error) => missing.push(`the colours by ${key} (${error.message})`));
    if (missing.length) status(`Could not load ${missing.join('; ')}`, 'error');
    frameMap();
    progress(1, 'Drawing…');
    view.renderNow();
    $('loading').hidden = true;
    state.ready = true;
    osc.listen();
  } catch (error) {
    state.error = error.message;
    $('progress').hidden = true;
    $('progress-text').textContent = `Could not load the map: ${error.message}`;
    $('progress-text').setAttribute('role', 'alert');
  }
}

function progress(fraction, text) {
  $('progress').value = fraction;
  $('progress-text').textContent = text;
}

function showEmpty(atlas) {
  state.hint = atlas.hint || 'run: soundatlas map LIBRARY';
  $('loading').hidden = true;
  $('empty').hidden = false;
  $('hint').textContent = state.hint;
  document.querySelectorAll('.toolbar select, .toolbar input, .toolbar button, #panel button, #panel input')
    .forEach((control) => { control.disabled = true; });
}

function fillSelects(atlas, models = true) {
  if (models) $('model').replaceChildren(...atlas.models.map((m) => el('option', {
    value: m.name, disabled: m.n_embedded === 0,
    textContent: `${m.name}${m.neighbourhood ? ` · ${m.neighbourhood}` : ''}${m.n_embedded ? '' : ' (not embedded)'}`,
  })));
  const keys = Object.keys(atlas.labels);
  $('colour-by').replaceChildren(el('option', { value: '', textContent: '(none)' }),
    ...keys.map((key) => el('option', {
      value: key, textContent: `${key} (${Object.keys(atlas.labels[key]).length})` })));
  $('filter-key').replaceChildren(el('option', { value: '', textContent: 'label…' }),
    ...keys.map((key) => el('option', { value: key, textContent: key })));
  fillFilterValues();
}

function defaultColourKey(labels) {
  const n = (key) => Object.keys(labels[key]).length;
  const keys = Object.keys(labels);
  if (labels.instrument && n('instrument') > 1) return 'instrument';
  return keys.find((key) => n(key) > 1 && n(key) <= 40) || keys[0] || null;
}

/** Load model ``name``'s points and draw them (moving from the current map when ``animate``). */
async function showModel(name, animate, onProgress = null) {
  const token = ++tokens.model;
  const { ids, points, dims, pitchAxis } = await api.loadPoints(name, onProgress);
  if (token !== tokens.model) return false; // another model was chosen meanwhile
  const norm = normaliser(points, ids.length, dims, pitchAxis);
  const world = toWorld(points, ids.length, dims, norm);
  const from = animate ? matchedPositions(data.ids, view.positions, ids, world) : null;
  Object.assign(data, { ids, dims, norm, rowOfPoint: rowsOf(data.sampleIds, ids) });
  view.setPoints(world, from);
  state.model = name;
  state.nPoints = ids.length;
  $('model').value = name;
  $('pitch-axis').hidden = pitchAxis === null;
  recolour();
  refreshFlags();
  return true;
}

/** The whole map in view, centred in the canvas beside the legend (which overlays its left
 * edge). */
function frameMap() {
  const legend = $('legend');
  const shown = legend.childElementCount > 0 && !legend.hidden;
  const box = legend.getBoundingClientRect();
  const canvas = view.canvas.getBoundingClientRect();
  view.setInsets({ left: shown ? Math.max(0, box.right - canvas.left) : 0 });
  view.home();
}

function screenPosition(id) {
  const i = indexOf(id);
  return i < 0 ? null : view.project(view.position(i));
}

// -- colour and flags (written straight into the geometry's arrays) --------------------------

async function colourBy(key) {
  const token = ++tokens.colour;
  if (key && !data.labels.has(key)) {
    let label;
    try {
      label = await api.loadLabel(key);
    } catch (error) {
      // the menu shows what the map is coloured by, not what could not be had
      if (token === tokens.colour) $('colour-by').value = state.colourBy || '';
      throw error;
    }
    data.labels.set(key, label);
    if (token !== tokens.colour) return; // another colouring was chosen meanwhile
  }
  if ((key || null) !== state.colourBy) curation.dropSelectionSuggestions(); // of the old label
  state.colourBy = key || null;
  $('colour-by').value = key || '';
  recolour();
}

function recolour() {
  const out = view.colours;
  const key = state.colourBy;
  const label = key && data.labels.get(key);
  if (!label) {
    const [r, g, b] = hexToRgb(UNIFORM);
    for (let i = 0; i < state.nPoints; i++) out.set([r, g, b], 3 * i);
    data.scheme = null;
    renderLegend($('legend'), null);
  } else {
    const s = colourScheme(label.values);
    const counts = new Int32Array(label.values.length + 1);
    for (let i = 0; i < state.nPoints; i++) {
      const row = data.rowOfPoint[i];
      const c = (row >= 0 ? label.codes[row] : -1) + 1;
      counts[c]++;
      out[3 * i] = s.table[3 * c];
      out[3 * i + 1] = s.table[3 * c + 1];
      out[3 * i + 2] = s.table[3 * c + 2];
    }
    data.scheme = s;
    renderLegend($('legend'), key, label.values, s, counts, addFilter);
  }
  view.updateColours();
}

function swatchOf(id) {
  const label = state.colourBy && data.labels.get(state.colourBy);
  const row = search(data.sampleIds, id);
  return label && data.scheme && row >= 0 ? codeCss(data.scheme.table, label.codes[row]) : null;
}

function refreshFlags() {
  const flags = view.flags;
  flags.fill(0);
  let dimmed = 0;
  if (data.matchIds) {
    const match = maskOf(data.matchIds, data.ids);
    for (let i = 0; i < flags.length; i++) if (!match[i]) { flags[i] = FLAG.DIM; dimmed++; }
  }
  if (selection.ids.length) {
    const picked = maskOf(selection.ids, data.ids);
    for (let i = 0; i < flags.length; i++) if (picked[i]) flags[i] |= FLAG.PICKED;
  }
  const mark = (id, bit) => {
    const i = id === null ? -1 : indexOf(id);
    if (i >= 0) flags[i] |= bit;
  };
  state.neighbours.forEach((id) => mark(id, FLAG.NEIGHBOUR));
  mark(data.focusId, FLAG.FOCUS);
  mark(state.selected, FLAG.SELECTED);
  state.dimmed = dimmed;
  view.updateFlags();
}

// -- search and label filters ----------------------------------------------------------------

let filterTimer = null;
let searchError = null; // the status line's message about the last search that failed
let searchAbort = null; // the search request running now (an AbortController)
function scheduleFilter() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(applyFilter, 180);
}

async function applyFilter() {
  const q = $('search').value.trim();
  const token = ++tokens.filter;
  renderChips();
  const loops = loopFilters();
  if (loops.typing) return; // a tempo range whose maximum is still being typed (90-1…)
  const active = Boolean(q || data.filters.length || data.collection || loops.tempo || loops.key);
  $('filter-clear').hidden = !active;
  if (!active) {
    searchAbort?.abort();
    searchAbort = null;
    if (activeList === lists.matches) activeList = lists.neighbours;
    Object.assign(data, { matchIds: null });
    state.matches = null;
    $('match-count').textContent = '';
    $('matches').hidden = true;
    refreshFlags();
    return;
  }
  // a filter on a label the user's last tag or star of it has taken away matches nothing
  const gone = data.filters.some(([key]) => !(key in data.atlas.labels));
  // a search superseded while it runs is dropped, not left to load a million ids: every key
  // typed in the search box is one
  searchAbort?.abort();
  const abort = new AbortController();
  searchAbort = abort;
  try {
    const found = gone ? { ids: [], items: [], total: 0 }
      : await api.search(q, data.filters, data.collection, loops, { signal: abort.signal });
    if (token !== tokens.filter) return;
    data.matchIds = Int32Array.from(found.ids).sort();
    state.matches = found.total;
    $('match-count').textContent = `${found.total} of ${data.atlas.n_samples} match`;
    lists.matches.fill(found.items);
    $('matches-title').textContent = found.total > found.items.length
      ? `Matches (first ${found.items.length} of ${found.total})` : `Matches (${found.total})`;
    $('matches').hidden = false;
    activeList = lists.matches; // the arrow keys step through what was found
    if (searchError !== null && $('status').textContent === searchError) status(''); // that one is over
    searchError = null;
    refreshFlags();
  } catch (error) {
    if (token !== tokens.filter) return;
    // the matches shown were another search's: none are shown rather than wrong ones
    Object.assign(data, { matchIds: null });
    state.matches = null;
    $('match-count').textContent = 'search failed';
    $('matches').hidden = true;
    refreshFlags();
    searchError = error.message;
    status(error.message, 'error');
  }
}

function fillFilterValues() {
  const key = $('filter-key').value;
  let values = key ? Object.keys(data.atlas.labels[key]) : [];
  values = isNumeric(values) ? values.sort((a, b) => a - b) : values.sort();
  $('filter-value').replaceChildren(...values.map((v) => el('option', { value: v, textContent: v })));
  $('filter-value').disabled = $('filter-add').disabled = !key;
}

function addFilter(key, value) {
  if (!data.filters.some(([k2, v]) => k2 === key && v === value)) data.filters.push([key, value]);
  applyFilter();
}

function renderChips() {
  $('filter-chips').replaceChildren(...data.filters.map(([key, value], i) => el('button', {
    type: 'button', className: 'chip', textContent: `${key}: ${value} ×`, title: 'Remove this filter',
    onclick: () => { data.filters.splice(i, 1); applyFilter(); },
  })), data.collection ? el('button', {
    type: 'button', className: 'chip', textContent: `collection: ${data.collection} ×`,
    title: 'Remove this filter', onclick: () => app.setFilterCollection(null) }) : '');
}

/** The tempo range and key filters of loops ({tempo: 'MIN-MAX' or null, key, relative}). */
function loopFilters() {
  const lo = $('tempo-min').value;
  const hi = $('tempo-max').value;
  const tempo = lo || hi ? `${lo || 0}-${hi || 1000}` : null;
  const typing = Boolean(lo && hi && Number(lo) > Number(hi));
  return { tempo, typing, key: $('filter-key-of-loop').value || null, relative: $('filter-relative').checked };
}

/** Show the loop filters when the atlas has tempo or key labels; the keys it has. */
function fillLoopFilters(atlas) {
  const keys = Object.keys(atlas.labels.key || {}).sort();
  $('loop-filters').hidden = !atlas.labels.tempo && !keys.length;
  $('filter-key-of-loop').replaceChildren(el('option', { value: '', textContent: 'key…' }),
    ...keys.map((k) => el('option', { value: k, textContent: k })));
}

/** After a write to samples ``ids`` (a tag, a star): their facts are read again when next
 *  shown, and the selected sample's now. */
function infoChanged(ids) {
  for (const id of ids) data.info.delete(id);
  const id = state.selected;
  if (id === null || !ids.includes(id)) return;
  const token = tokens.select;
  sampleInfo(id).then((info) => {
    if (token === tokens.select) renderFacts($('sample-facts'), info);
  }, () => {});
}

/** After the user's labels changed (tags, stars): the label list, and what shows ``keys``. */
async function labelsChanged(keys) {
  try {
    const atlas = await api.getJSON('/api/atlas');
    data.atlas.labels = atlas.labels;
    const colour = state.colourBy;
    const filterKey = $('filter-key').value;
    fillSelects(data.atlas, false);
    $('filter-key').value = filterKey;
    fillFilterValues();
    for (const key of keys) data.labels.delete(key);
    if (colour && keys.has(colour)) await colourBy(colour in atlas.labels ? colour : '');
    else $('colour-by').value = colour || '';
    if (data.filters.some(([key]) => keys.has(key))) applyFilter();
  } catch (error) {
    status(error.message, 'error');
  }
}

// -- hover, click, double-click ---------------------------------------------------------------

const hover = { x: 0, y: 0, scheduled: false, index: -1 };

function onPointerMove(event) {
  if (event.buttons || selection.dragging) return;
  hover.x = event.clientX;
  hover.y = event.clientY;
  if (!hover.scheduled) {
    hover.scheduled = true;
    requestAnimationFrame(hoverFrame); // at most one pick per frame, however fast the mouse
  }
}

function hoverFrame() {
  hover.scheduled = false;
  if (!state.ready) return;
  const i = view.pick(hover.x, hover.y);
  view.canvas.style.cursor = i >= 0 ? 'pointer' : '';
  if (i < 0) {
    hover.index = -1;
    $('tooltip').hidden = true;
    return;
  }
  showTooltip(i);
  if (i !== hover.index) {
    hover.index = i;
    osc?.hover(data.ids[i], state.model);
    playSample(data.ids[i]);
  }
}

function showTooltip(i) {
  const id = data.ids[i];
  const tip = $('tooltip');
  const rect = $('map').getBoundingClientRect();
  const row = data.rowOfPoint[i];
  const label = state.colourBy && data.labels.get(state.colourBy);
  const value = label && row >= 0 && label.codes[row] >= 0 ? label.values[label.codes[row]] : null;
  const path = data.paths.get(id);
  tip.replaceChildren(el('strong', { textContent: path ? basename(path) : `sample ${id}` }),
    ...(value === null ? [] : [el('span', { textContent: `${state.colourBy}: ${value}` })]));
  tip.hidden = false;
  const x = hover.x - rect.left + 14;
  const y = hover.y - rect.top + 14;
  tip.style.left = `${x + tip.offsetWidth > rect.width ? x - tip.offsetWidth - 28 : x}px`;
  tip.style.top = `${y + tip.offsetHeight > rect.height ? y - tip.offsetHeight - 28 : y}px`;
  if (!path) pathOf(id).then(() => { if (hover.index === i) showTooltip(i); }).catch(() => {});
}

let down = null;
function onPointerDown(event) {
  down = { x: event.clientX, y: event.clientY };
}

function onPointerUp(event) {
  if (!down || event.button !== 0) return;
  const moved = Math.hypot(event.clientX - down.x, event.clientY - down.y);
  down = null;
  if (moved > 5 || !state.ready) return;
  const i = view.pick(event.clientX, event.clientY);
  if (state.mode === 'path' || i < 0) return; // path mode draws with its own handler
  const id = data.ids[i];
  if (state.mode === 'analogy') analogy.setSlot(null, id);
  else if (id !== state.selected) select(id);
}

function onDoubleClick(event) {
  const i = view.pick(event.clientX, event.clientY);
  if (i >= 0) view.flyTo(view.position(i));
}

// -- sound -----------------------------------------------------------------------------------

/** Play sample ``id``: resolves true when it started, false when another sound or the browser's
 *  autoplay rule stopped it, null when it could not be had (the reason shown). */
function playSample(id, onEnded = null) {
  return player.play(id, 'sample', onEnded).catch((error) => {
    status(`Cannot play sample ${id}: ${error.message}`, 'error');
    return null;
  });
}

function playFromList(id, list) {
  activeList = list;
  data.focusId = id;
  refreshFlags();
  playSample(id);
}

function played({ id, key }) {
  if (curation.playing && !curation.isPlaying(id, key)) curation.stop(); // another sound took over
  if (id !== null) {
    state.lastPlayed = id;
    osc?.play(id, state.model);
  }
  $('sound-hint').hidden = true;
  window.dispatchEvent(new CustomEvent('soundatlas:play', { detail: { id, key } }));
}

let tracing = null;
view.onFrame = () => { // move the trace along the trajectory of what is playing
  const now = player.current;
  let key = null;
  let rate = 0;
  let from = 0; // the drawn path starts at the sounding part's first frame
  if (now?.key === 'sample' && now.id === state.selected && data.trajectory) {
    [key, rate, from] = ['trajectory', data.trajectory.frameRate, data.trajectory.sounding[0]];
  } else if (now?.key === 'query' && state.query) {
    [key, rate, from] = ['query', state.query.frame_rate, state.query.sounding[0]];
  } else if (now?.key === 'path' && pathTool.render) {
    key = 'path';
  }
  if (tracing && tracing !== key) view.trace(tracing, null);
  tracing = key;
  if (!key) return false;
  const elapsed = player.ctx.currentTime - now.startTime;
  view.trace(key, key === 'path' ? pathTool.traceAt(elapsed) : Math.max(0, elapsed * rate - from));
  return true;
};

// -- the selected sample ---------------------------------------------------------------------

function rememberPaths(items) {
  if (data.paths.size > 200_000) data.paths.clear(); // a bound; they are cheap to ask again
  for (const item of items) if (item.path) data.paths.set(item.id, item.path);
}

let lookupTimer = null;
/** The path of sample ``id``: known, or asked for together with the others wanted within the
 *  same few milliseconds (one POST /api/samples/lookup instead of a request per id). */
function pathOf(id) {
  if (data.paths.has(id)) return Promise.resolve(data.paths.get(id));
  return new Promise((resolve, reject) => {
    if (!data.wanted.has(id)) data.wanted.set(id, []);
    data.wanted.get(id).push({ resolve, reject });
    lookupTimer ??= setTimeout(async () => {
      const wanted = data.wanted;
      data.wanted = new Map();
      lookupTimer = null;
      try {
        const { items } = await api.lookupSamples([...wanted.keys()]);
        rememberPaths(items);
        for (const [key, waiting] of wanted) {
          for (const w of waiting) (data.paths.has(key) ? w.resolve(data.paths.get(key)) : w.reject(new Error(`no sample ${key}`)));
        }
      } catch (error) {
        for (const waiting of wanted.values()) for (const w of waiting) w.reject(error);
      }
    }, 15);
  });
}

function sampleInfo(id) {
  if (!data.info.has(id)) {
    if (data.info.size > 5000) data.info.delete(data.info.keys().next().value);
    const promise = api.sample(id);
    promise.then((info) => { promise.value = info; rememberPaths([info]); }, () => data.info.delete(id));
    data.info.set(id, promise);
  }
  return data.info.get(id);
}

async function select(id) {
  if (id === null || id === undefined) return clearSelected();
  const token = ++tokens.select;
  osc?.select(id, state.model);
  Object.assign(state, { selected: id, neighbours: [], trajectory: null });
  data.trajectory = null;
  view.removeAll('trajectory');
  refreshFlags();
  $('details-empty').hidden = true;
  $('details-body').hidden = false;
  $('sample-name').textContent = `sample ${id}`;
  $('sample-path').textContent = '';
  $('sample-facts').replaceChildren();
  $('cqt').src = api.cqtURL(id);
  $('download-selected').href = api.audioURL(id);
  $('download-selected').download = data.paths.has(id) ? basename(data.paths.get(id))
    : `sample-${id}`;
  const model = state.model;
  const failed = (error) => { status(error.message, 'error'); return null; };
  // at once: the star, the note and y act on this sample from now on, not on the last one
  curation.show(id).catch(failed);
  const [info, near, traj] = await Promise.all([sampleInfo(id).catch(failed),
    api.neighbours(model, id, k(), nearSpace()).catch(failed), api.loadTrajectory(model, id).catch(failed)]);
  if (token !== tokens.select) return;
  if (info) {
    $('sample-name').textContent = basename(info.path);
    $('sample-path').textContent = info.path;
    $('download-selected').download = basename(info.path);
    renderFacts($('sample-facts'), info);
  }
  lists.neighbours.fill(near ? near.neighbours : [], near ? near.space : 'map');
  if (near && near.note) status(near.note); // searched elsewhere than asked, and the command that mends it
  state.neighbours = lists.neighbours.ids;
  activeList = lists.neighbours;
  data.focusId = null;
  player.prefetch(state.neighbours);
  if (traj) drawTrajectory(id, traj);
  refreshFlags();
}

function clearSelected() {
  tokens.select++;
  Object.assign(state, { selected: null, neighbours: [], trajectory: null });
  data.trajectory = null;
  data.focusId = null;
  lists.neighbours.fill([]);
  view.removeAll('trajectory');
  $('details-empty').hidden = false;
  $('details-body').hidden = true;
  refreshFlags();
}

/** The sample's path over its sounding part: the near-silence before and after a note has no
 *  pitch of its own, and its height would swing the path away from the note's. */
function drawTrajectory(id, traj) {
  const [first, last] = traj.sounding;
  const world = sounding(toWorld(traj.frames, traj.nFrames, traj.dims, data.norm), traj.sounding);
  view.setPath('trajectory', world, '#3ddc84', '#ff5d73');
  const at = (i) => new THREE.Vector3().fromArray(world, 3 * i);
  view.setMarker('trajectory:start', at(0), '#3ddc84', 'S', 18);
  view.setMarker('trajectory:median', new THREE.Vector3(...medianOf(world)), '#ffcf5c', 'M', 18);
  view.setMarker('trajectory:end', at(last - first), '#ff5d73', 'E', 18);
  data.trajectory = traj;
  state.trajectory = { id, nFrames: traj.nFrames, drawn: [first, last], points: world.length / 3 };
}

// -- models and views ------------------------------------------------------------------------

async function switchModel(name) {
  status(`Loading the map of ${name}…`);
  try {
    if (!(await showModel(name, true))) return; // a later choice has taken over
  } catch (error) {
    $('model').value = state.model;
    status(error.message, 'error');
    return;
  }
  status('');
  // placed with the old model's coordinates: gone until the new model's answers come
  view.remove('analogy:result');
  if (query.file) query.forgetAnswer();
  analogy.placeMarkers();
  pathTool.replace(indexOf);
  if (state.selected !== null) select(state.selected);
  if (analogy.complete) analogy.run();
  if (query.file) query.run(query.file);
}

function flyToSelected() {
  const i = state.selected === null ? -1 : indexOf(state.selected);
  if (i >= 0) view.flyTo(view.position(i));
}

function setView(mode) {
  view.setView(mode, $('plane').value);
  state.view = mode;
  $('view-3d').setAttribute('aria-pressed', String(mode === '3d'));
  $('view-2d').setAttribute('aria-pressed', String(mode === '2d'));
}

// -- keyboard, status, wiring ----------------------------------------------------------------

function onKey(event) {
  const typing = event.target.matches('input, textarea, select, [contenteditable="true"]');
  if (event.key === 'Escape') {
    if (typing) { // Esc leaves the field, and does nothing else: a selection is not lost to it
      if (event.target.id === 'search' && event.target.value) {
        // the browser empties a search field on Esc without an input event: search again
        event.preventDefault();
        event.target.value = '';
        scheduleFilter();
      }
      event.target.blur();
      return;
    }
    if (curation.playing) {
      curation.stop();
      player.stop();
    } else if (player.current && player.current.key !== 'sample') {
      player.stop(); // a rendered path, a mosaic, an upload: Esc stops it
    } else if (state.mode === 'analogy') {
      analogy.setMode('explore');
    } else if (state.mode === 'path') {
      pathTool.setMode(false);
    } else if (state.selected !== null || state.selection.length) {
      selection.set([]);
      clearSelected();
    } else {
      analogy.clear();
    }
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey || !state.ready) return;
  const onControl = event.target.matches('button, a, summary');
  const keys = {
    '/': () => { $('search').focus(); $('search').select(); },
    ArrowDown: () => activeList.step(1),
    ArrowRight: () => activeList.step(1),
    ArrowUp: () => activeList.step(-1),
    ArrowLeft: () => activeList.step(-1),
    Enter: () => { const item = activeList.current(); if (item && !onControl) select(item.id); },
    ' ': () => { if (state.selected !== null && !onControl) playSample(state.selected); },
    2: () => setView('2d'),
    3: () => setView('3d'),
    f: flyToSelected,
    s: () => curation.toggleStar(),
    t: () => { if (state.selected !== null && curation.writable) $('tag-input').focus(); },
    y: () => curation.acceptKey(),
    n: () => kit.swap(),
    k: () => kit.playOrStop(),
    a: toggleAnalogy,
    p: togglePath,
    Backspace: () => { if (state.mode === 'path') pathTool.undo(); },
  };
  const action = keys[event.key];
  if (event.key === 'Backspace' && state.mode !== 'path') return;
  if (!action || ((event.key === ' ' || event.key === 'Enter') && onControl)) return;
  event.preventDefault();
  action();
}

function toggleAnalogy() {
  if (state.mode === 'path') pathTool.setMode(false);
  analogy.setMode(state.mode === 'analogy' ? 'explore' : 'analogy');
}

function togglePath() {
  if (state.mode === 'analogy') analogy.setMode('explore');
  pathTool.setMode(state.mode !== 'path');
}

let statusTimer = null;
function status(text, kind = 'info') {
  const node = $('status');
  node.textContent = text;
  node.classList.toggle('error', kind === 'error');
  clearTimeout(statusTimer);
  if (text) statusTimer = setTimeout(() => { node.textContent = ''; }, kind === 'error' ? 12_000 : 5_000);
}

function wire() {
  const on = (id, type, handler) => $(id).addEventListener(type, handler);
  for (const type of ['pointerdown', 'keydown']) {
    window.addEventListener(type, () => player.unlock(), { capture: true }); // sound needs a gesture
  }
  $('map').addEventListener('pointerdown', (e) => selection.start(e), { capture: true });
  $('map').addEventListener('pointerdown', (e) => pathTool.start(e), { capture: true });
  view.canvas.addEventListener('pointermove', onPointerMove);
  view.canvas.addEventListener('pointerleave', () => { $('tooltip').hidden = true; hover.index = -1; });
  view.canvas.addEventListener('pointerdown', onPointerDown);
  view.canvas.addEventListener('pointerup', onPointerUp);
  view.canvas.addEventListener('dblclick', onDoubleClick);
  window.addEventListener('keydown', onKey);
  let cqtMessage = null; // what the status line says about the last image that did not load
  on('cqt', 'load', () => {
    $('cqt').hidden = false;
    if (cqtMessage !== null && $('status').textContent === cqtMessage) status('');
    cqtMessage = null;
  });
  on('cqt', 'error', () => { // a broken image says nothing: ask the server why
    const id = state.selected;
    $('cqt').hidden = true;
    api.cqtProblem(id).then((message) => {
      if (message && state.selected === id) {
        cqtMessage = message;
        status(message, 'error');
      }
    });
  });
  on('search', 'input', scheduleFilter);
  on('filter-key', 'change', fillFilterValues);
  on('filter-add', 'click', () => {
    if ($('filter-key').value) addFilter($('filter-key').value, $('filter-value').value);
  });
  on('filter-clear', 'click', () => {
    $('search').value = '';
    $('tempo-min').value = '';
    $('tempo-max').value = '';
    $('filter-key-of-loop').value = '';
    $('filter-relative').checked = false;
    data.filters = [];
    app.setFilterCollection(null);
  });
  on('colour-by', 'change', (e) => colourBy(e.target.value)
    .then(() => { if (state.selected !== null) curation.show(state.selected); })
    .catch((error) => status(error.message, 'error')));
  on('model', 'change', (e) => switchModel(e.target.value));
  on('view-3d', 'click', () => setView('3d'));
  on('view-2d', 'click', () => setView('2d'));
  on('plane', 'change', () => { if (state.view === '2d') setView('2d'); });
  on('view-reset', 'click', () => frameMap());
  on('point-size', 'input', (e) => view.setSizeScale(Number(e.target.value)));
  on('analogy-mode', 'click', toggleAnalogy);
  on('path-mode', 'click', togglePath);
  on('path-render', 'click', () => pathTool.renderPath());
  on('path-undo', 'click', () => pathTool.undo());
  on('path-clear', 'click', () => pathTool.clear());
  on('path-play', 'click', () => pathTool.play());
  on('path-step', 'change', () => pathTool.stepChanged());
  on('query-mosaic', 'click', () => query.mosaic());
  on('mosaic-play', 'click', () => query.playMosaic());
  on('play-selected', 'click', () => state.selected !== null && playSample(state.selected));
  on('fly-selected', 'click', flyToSelected);
  for (const slot of ['a', 'b', 'c']) {
    on(`set-${slot}`, 'click', () => state.selected !== null && analogy.setSlot(slot, state.selected));
  }
  on('add-selected', 'click', () => state.selected !== null && selection.add([state.selected]));
  on('add-neighbours', 'click', () => selection.add(state.neighbours));
  const askAgain = () => { // every list of nearest sounds shown takes the new k, or "by"
    if (state.selected !== null) select(state.selected);
    if (analogy.complete) analogy.run();
    if (query.file && state.query) query.run(query.file);
  };
  on('k', 'change', askAgain);
  on('near-space', 'change', askAgain);
  on('query-file', 'change', (e) => { if (e.target.files[0]) query.run(e.target.files[0]); });
  on('query-play', 'click', () => query.play());
  on('query-clear', 'click', () => query.clear());
  for (const format of ['m3u', 'csv', 'zip']) on(`export-${format}`, 'click', () => selection.export(format));
  on('selection-clear', 'click', () => selection.set([]));
  on('star-selected', 'click', () => curation.toggleStar());
  on('tag-input', 'keydown', (e) => {
    if (e.key === 'Enter' && state.selected !== null) curation.addTagFromInput(e.target, [state.selected]);
  });
  on('sample-note', 'change', () => curation.saveNote());
  on('selection-star', 'click', () => curation.star(state.selection, true));
  on('selection-unstar', 'click', () => curation.star(state.selection, false));
  on('selection-tag-add', 'click', () => curation.addTagFromInput($('selection-tag'), state.selection));
  on('selection-tag', 'keydown', (e) => {
    if (e.key === 'Enter') curation.addTagFromInput(e.target, state.selection);
  });
  on('selection-collect', 'click', () => curation.addToCollection($('collection-target').value, state.selection));
  on('collection-create', 'click', () => {
    curation.createCollection($('collection-name').value.trim()).then(() => { $('collection-name').value = ''; });
  });
  on('collection-from-selection', 'click', () => {
    curation.createCollection($('collection-name').value.trim(), state.selection)
      .then(() => { $('collection-name').value = ''; });
  });
  on('filter-collection', 'change', (e) => app.setFilterCollection(e.target.value));
  for (const id of ['tempo-min', 'tempo-max']) on(id, 'input', scheduleFilter);
  for (const id of ['filter-key-of-loop', 'filter-relative']) on(id, 'change', applyFilter);
  on('sample-suggestion-accept', 'click', () => curation.acceptSuggestion());
  on('kit-add-selected', 'click', () => state.selected !== null && kit.add([state.selected]));
  on('kit-add-selection', 'click', () => kit.add(state.selection));
  on('kit-play', 'click', () => kit.playOrStop());
  // a number out of range is brought into it (0 BPM is the slowest, 20); an empty field is
  // the default
  const within = (text, lo, hi, empty) => {
    const v = Number(text);
    return text.trim() === '' || !Number.isFinite(v) ? empty : Math.min(hi, Math.max(lo, v));
  };
  on('kit-tempo', 'change', (e) => {
    kit.tempo = within(e.target.value, 20, 400, 120);
    kit.render();
  });
  on('kit-swing', 'change', (e) => {
    kit.swing = within(e.target.value, 0.5, 0.75, 0.5);
    kit.render();
  });
  on('kit-suggest', 'click', () => kit.suggest(Number($('kit-size').value)));
  on('kit-export', 'click', () => kit.exportZip());
  on('kit-import', 'change', (e) => { if (e.target.files[0]) kit.importFile(e.target.files[0]); });
  on('kit-clear', 'click', () => { kit.stop(); kit.lanes = []; kit.render(); });
  on('selection-suggest', 'click', () => curation.suggestForSelection(state.selection));
  on('selection-accept', 'click', () => curation.acceptSelectionSuggestions());
  query.acceptDrops($('drop-zone'));
  query.acceptDrops($('map'));
  analogy.render();
  pathTool.show();
}

wire();
boot();
