// DOM pieces of the side panel: small element builder, sample lists (playable, selectable,
// draggable to the desktop or a DAW), the legend, sample facts.

import { audioURL } from './api.js';
import { codeCss, rampCss } from './colours.js';

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export const basename = (path) => path.split('/').pop();

/** Save a downloaded blob under ``filename`` (a temporary link, clicked). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export const seconds = (s) => (s == null ? '–' : `${s < 10 ? s.toFixed(2) : s.toFixed(1)} s`);

const AUDIO_TYPES = {
  wav: 'audio/wav', wave: 'audio/wav', aif: 'audio/aiff', aiff: 'audio/aiff', flac: 'audio/flac',
  ogg: 'audio/ogg', oga: 'audio/ogg', opus: 'audio/ogg', mp3: 'audio/mpeg',
};

/** Drag data that lets a sample be dropped on the desktop (Chromium's DownloadURL) or a DAW. */
export function setDragData(dataTransfer, id, path) {
  const url = new URL(audioURL(id), window.location.href).href;
  const name = basename(path).replace(/:/g, '_');
  const type = AUDIO_TYPES[name.split('.').pop().toLowerCase()] || 'application/octet-stream';
  dataTransfer.setData('DownloadURL', `${type}:${name}:${url}`);
  dataTransfer.setData('text/uri-list', url);
  dataTransfer.setData('text/plain', url);
  dataTransfer.effectAllowed = 'copy';
}

/**
 * A list of samples [{id, path, distance?}] in ``ol``: a click (or Enter) on an entry plays it,
 * its Select button (or a double-click) selects it; each entry drags out as a file.
 * ``swatch(id)`` gives the entry's colour-by colour.
 */
const SPACE_TITLES = {
  map: 'distance on the map',
  similarity: 'distance by sound and pitch (the network\'s 256-unit hidden layer beside a pitch profile, not the 3-D map)',
  timbre: 'distance by timbre (the network\'s 256-unit hidden layer alone: the same instrument at any pitch)',
};

export class SampleList {
  constructor(ol, { onPlay, onSelect, swatch = () => null, onItems = () => {} }) {
    this.ol = ol;
    this.onPlay = onPlay;
    this.onSelect = onSelect;
    this.swatch = swatch;
    this.onItems = onItems; // told of every item listed (the page remembers their paths)
    this.items = [];
    this.index = -1;
  }

  get ids() {
    return this.items.map((item) => item.id);
  }

  /** List ``items``; ``space``: where their distances were measured (the answer's ``space``). */
  fill(items, space = 'map') {
    this.items = items;
    this.space = space;
    this.onItems(items);
    this.index = -1;
    this.ol.replaceChildren(...items.map((item, i) => this.entry(item, i)));
  }

  entry(item, i) {
    const name = basename(item.path);
    const colour = this.swatch(item.id);
    const li = el('li', { className: 'sample', draggable: true, tabIndex: -1, title: item.path,
      dataset: { id: String(item.id) } },
    el('button', { type: 'button', className: 'play small', textContent: '▶',
      ariaLabel: `Play ${name}`, onclick: (e) => { e.stopPropagation(); this.activate(i); } }),
    colour ? el('span', { className: 'swatch', style: `background:${colour}` }) : null,
    el('span', { className: 'name', textContent: name }),
    item.copy ? el('span', { className: 'copy', textContent: 'same file',
      title: 'the same content as the sound asked about (a copy at another path)' }) : null,
    item.distance == null ? null : el('span', { className: 'distance',
      textContent: item.distance.toPrecision(3), title: SPACE_TITLES[this.space] || SPACE_TITLES.map }),
    el('button', { type: 'button', className: 'small', textContent: 'Select',
      ariaLabel: `Select ${name}`, onclick: (e) => { e.stopPropagation(); this.onSelect(item.id); } }));
    li.addEventListener('click', () => this.activate(i));
    li.addEventListener('dblclick', () => this.onSelect(item.id));
    li.addEventListener('dragstart', (e) => setDragData(e.dataTransfer, item.id, item.path));
    return li;
  }

  /** Make entry ``i`` the current one and play it. */
  activate(i) {
    if (i < 0 || i >= this.items.length) return;
    this.index = i;
    this.ol.querySelectorAll('li').forEach((li, j) => {
      li.classList.toggle('current', j === i);
      if (j === i) {
        li.setAttribute('aria-current', 'true');
        li.scrollIntoView({ block: 'nearest' });
      } else {
        li.removeAttribute('aria-current');
      }
    });
    this.onPlay(this.items[i].id, this);
  }

  step(delta) {
    if (!this.items.length) return;
    const i = this.index < 0 ? (delta > 0 ? 0 : this.items.length - 1) : this.index + delta;
    this.activate(Math.min(this.items.length - 1, Math.max(0, i)));
  }

  current() {
    return this.index >= 0 ? this.items[this.index] : null;
  }
}

/** Fill the legend: classes with their colours and counts (buttons that filter by the class),
 *  or a gradient from the smallest to the largest value. */
export function renderLegend(node, key, values, scheme, counts, onPick) {
  if (!key) {
    node.replaceChildren();
    node.hidden = true;
    return;
  }
  node.hidden = false;
  const title = el('div', { className: 'legend-title', textContent: key });
  if (scheme.kind === 'ramp') {
    node.replaceChildren(...[title,
      el('div', { className: 'ramp', style: `background:${rampCss()}` }),
      el('div', { className: 'ramp-ends' }, el('span', { textContent: String(scheme.min) }),
        el('span', { textContent: String(scheme.max) })),
      counts[0] ? el('div', { className: 'legend-none', textContent: `${counts[0]} without ${key}` }) : null,
    ].filter(Boolean));
    return;
  }
  const shown = 30;
  const entries = values.slice(0, shown).map((value, code) => el('li', {},
    el('button', { type: 'button', title: `Show only ${key} = ${value}`, onclick: () => onPick(key, value) },
      el('span', { className: 'swatch', style: `background:${codeCss(scheme.table, code)}` }),
      el('span', { className: 'value', textContent: value }),
      el('span', { className: 'n', textContent: String(counts[code + 1]) }))));
  if (counts[0]) {
    entries.push(el('li', {},
      el('span', { className: 'swatch', style: `background:${codeCss(scheme.table, -1)}` }),
      el('span', { className: 'value', textContent: '(none)' }),
      el('span', { className: 'n', textContent: String(counts[0]) })));
  }
  const more = values.length > shown
    ? el('div', { className: 'legend-none', textContent: `… ${values.length - shown} more` }) : null;
  node.replaceChildren(...[title, el('ul', {}, ...entries), more].filter(Boolean));
}

/** The facts of a sample (GET /api/samples/{id}) as <dt>/<dd> pairs. */
export function renderFacts(dl, info) {
  const rows = [
    ['duration', seconds(info.file_duration ?? info.duration)
      + (info.truncated ? ` (${seconds(info.duration)} analysed)` : '')],
    ...Object.entries(info.labels).sort(([a], [b]) => a.localeCompare(b)),
    ['format', [info.orig_sr && `${info.orig_sr} Hz`, info.n_channels && `${info.n_channels} ch`,
      info.size && `${(info.size / 1024).toFixed(0)} KB`].filter(Boolean).join(', ')],
    ['id', String(info.id)],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { textContent: k }), el('dd', { textContent: v })]));
}
