// What the user makes of the library: stars, tags, notes and collections (/api/curation and
// /api/collections). The server keeps them in the atlas by content, so they follow moved files;
// tags are labels, so after a write the page reloads the labels it colours and filters by.
// A server started with --read-only (or one that cannot write its atlas) shows them without
// the controls that change them.

import * as api from './api.js';
import { basename, el } from './panel.js';

const $ = (id) => document.getElementById(id);
const MAX_IDS = 100000; // samples per write the server takes (web/routers/curation.py MAX_IDS)

/** Send ``ids`` to ``send(chunk, first)`` in chunks the server takes, one after the other (a
 *  shift-drag over a map of a million points selects more than one write holds), showing
 *  progress; the answers in order. */
export async function inChunks(app, ids, send, what) {
  const answers = [];
  for (let start = 0; start < ids.length; start += MAX_IDS) {
    if (ids.length > MAX_IDS) app.status(`${what}: ${start} of ${ids.length} samples…`);
    answers.push(await send(ids.slice(start, start + MAX_IDS), start === 0));
  }
  return answers;
}

/** ``n`` samples written, and the ``copies`` of their sounds elsewhere that the write reached
 *  too (the user's tags, stars and notes are kept by content). */
function samplesText(n, copies = 0) {
  const named = `${n} sample${n === 1 ? '' : 's'}`;
  // a write sent in chunks counts, in each, the samples of the other chunks as copies: no count
  if (!copies || n > MAX_IDS) return named;
  return `${named} (and ${copies} cop${copies === 1 ? 'y' : 'ies'} of ${n === 1 ? 'its sound' : 'their sounds'} elsewhere)`;
}

/** What adding ``asked`` samples to a collection did, ``added`` of them new sounds there: a
 *  collection holds sounds, so a copy of one already in it (or twice in the selection) adds
 *  nothing, and is in it all the same. */
function addedText(added, asked) {
  const sounds = `${added} sound${added === 1 ? '' : 's'} added`;
  return added === asked ? sounds : `${sounds} (of ${asked} samples: the others are in it already, or copies of sounds in it)`;
}

/** One write's answer from its chunks': ``items`` joined, counts summed. */
function joined(answers) {
  const out = { ...answers[0], items: answers.flatMap((a) => a.items ?? []) };
  for (const key of ['changed', 'added', 'copies']) {
    if (key in out) out[key] = answers.reduce((sum, a) => sum + (a[key] ?? 0), 0);
  }
  return out;
}

/** The API path of collection ``name``. A name that is all dots would be a URL's dot segment,
 *  which the browser resolves away (``/api/collections/../add`` is ``/api/add``): refused here in
 *  the server's words, which refuses to make such a collection. */
function collectionPath(name) {
  if (name === '.' || name === '..') {
    throw new Error(`collection name '${name}': 1 to 100 characters, not '.' or '..', no control characters, no space at either end`);
  }
  return `/api/collections/${encodeURIComponent(name)}`;
}

export class Curation {
  /** ``app``: the page's shared pieces (state, status, selection, playSample, labelsChanged,
   *  showIds, pathOf). */
  constructor(app) {
    this.app = app;
    this.writable = false;
    this.current = null; // the selected sample's curation {id, starred, tags, suggested, note, collections}
    this.collections = [];
    this.suggestion = null; // {id, label, value, confidence} for the selected sample
    this.selectionSuggestions = null; // {label, found: [{id, value, confidence}]}
    this.playing = null; // {name, ids, index} while a collection plays through
    app.state.curation = { writable: false, selected: null, collections: [], tags: {} };
  }

  async load() {
    const summary = await api.getJSON('/api/curation');
    this.writable = summary.writable;
    this.summary(summary);
    document.body.classList.toggle('read-only', !this.writable);
    $('star-selected').disabled = !this.writable;
    $('sample-note').readOnly = !this.writable;
    $('curation-read-only').hidden = this.writable;
    $('curation-read-only').textContent = this.writable ? ''
      : `Tags and collections are shown, not edited: ${summary.read_only}`;
  }

  summary(summary) {
    this.collections = summary.collections;
    $('curation-missing').hidden = !summary.missing;
    $('curation-missing').textContent = summary.missing
      ? `Tags, stars or collection places of ${summary.missing} file${summary.missing === 1 ? '' : 's'} no longer in the library are kept (soundatlas tags missing lists them; tags forget-missing forgets them).`
      : '';
    Object.assign(this.app.state.curation, { writable: this.writable, missing: summary.missing,
      collections: summary.collections.map((c) => c.name), tags: summary.tags });
    $('tag-suggestions').replaceChildren(...Object.keys(summary.tags).map(
      (tag) => el('option', { value: tag })));
    this.renderCollections();
  }

  async refresh() {
    this.summary(await api.getJSON('/api/curation'));
  }

  // -- the selected sample -------------------------------------------------------------------

  async show(id) {
    this.current = null;
    this.suggestion = null;
    Object.assign(this.app.state.curation, { selected: null, suggestion: null });
    $('sample-suggestion').hidden = true;
    // until this sample's curation comes, nothing of the last one's shows or can be changed
    $('star-selected').disabled = true;
    $('sample-note').readOnly = true;
    $('sample-note').value = '';
    $('sample-tags').replaceChildren();
    $('sample-collections').textContent = '';
    if (id === null) return;
    const { items } = await api.getJSON(`/api/curation/items?ids=${id}`);
    if (this.app.state.selected !== id) return;
    this.render(items[0]);
    await this.suggestForSelected(id);
  }

  // -- suggestions from the map (for the label the map is coloured by) -----------------------

  async suggest(ids, label) {
    const model = this.app.state.model;
    return api.postJSON(`/api/models/${encodeURIComponent(model)}/suggest`,
      { ids: ids.slice(0, 1000), label });
  }

  tagOf(label, value) {
    return label === 'tag' ? value : `${label}:${value}`;
  }

  async suggestForSelected(id) {
    const label = this.app.state.colourBy;
    if (!label || label === 'starred') return;
    const answer = await this.suggest([id], label);
    const s = answer.suggestions[0];
    if (!s || this.app.state.selected !== id) return;
    this.suggestion = { id, label, value: s.value, confidence: s.confidence, far: s.far };
    this.app.state.curation.suggestion = this.suggestion;
    // far: its nearest labelled sample is farther off than 99 % of the labelled samples from
    // their own nearest, so the vote says little (a snare among labelled synth tones)
    $('sample-suggestion-text').textContent =
      `Suggested ${label}: ${s.value} (${Math.round(100 * s.confidence)} % of its ${answer.k} nearest labelled)`
      + (s.far ? `; unlike every sample labelled with ${label}` : '');
    $('sample-suggestion').classList.toggle('far', Boolean(s.far));
    $('sample-suggestion').hidden = false;
  }

  async acceptSuggestion() {
    const s = this.suggestion;
    if (!s || !this.writable) return;
    if (await this.tag([s.id], [this.tagOf(s.label, s.value)])) {
      this.app.status(`Accepted ${s.label}: ${s.value}`);
      $('sample-suggestion').hidden = true;
      this.suggestion = null;
      this.app.state.curation.suggestion = null;
    }
  }

  async suggestForSelection(ids) {
    const label = this.app.state.colourBy;
    if (!label || !ids.length) {
      this.app.status('Colour the map by a label to have it suggested', 'error');
      return;
    }
    try {
      const answer = await this.suggest(ids, label);
      const all = answer.suggestions.filter(Boolean);
      // as `suggest --apply`: those unlike every labelled sample are shown, not accepted
      const found = all.filter((s) => !s.far);
      const far = all.length - found.length;
      this.selectionSuggestions = { label, found };
      this.app.state.curation.selectionSuggestions = { label, n: found.length, far };
      $('selection-suggestions').textContent = (all.length
        ? `${all.length} of ${Math.min(ids.length, 1000)} selected have a suggestion of ${label}`
        : `No suggestion: every selected sample has ${label}, or none has a labelled neighbour`)
        + (far ? `; ${far} unlike every sample labelled with ${label}, not to be accepted` : '');
      $('selection-suggestions').hidden = false;
      $('selection-accept').hidden = !found.length;
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  async acceptSelectionSuggestions() {
    const pending = this.selectionSuggestions;
    if (!pending || !this.writable) return;
    const byTag = new Map();
    for (const s of pending.found) {
      const tag = this.tagOf(pending.label, s.value);
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(s.id);
    }
    let accepted = 0;
    let failed = 0;
    for (const [tag, ids] of byTag) {
      if (await this.tag(ids, [tag])) accepted += ids.length;
      else failed += ids.length;
    }
    this.dropSelectionSuggestions();
    if (failed) {
      this.app.status(`Accepted ${accepted} suggestions of ${pending.label}; ${failed} could `
        + 'not be written (see the error above)', 'error');
    } else {
      this.app.status(`Accepted ${accepted} suggestions of ${pending.label}`);
    }
  }

  /** Forget the selection's suggestions: the selection or the label they were for changed. */
  dropSelectionSuggestions() {
    if (!this.selectionSuggestions && $('selection-suggestions').hidden) return;
    this.selectionSuggestions = null;
    this.app.state.curation.selectionSuggestions = null;
    $('selection-suggestions').hidden = true;
    $('selection-accept').hidden = true;
  }

  /** Key y: accept the selection's suggestions when some wait, else the sample's. */
  acceptKey() {
    if (this.selectionSuggestions?.found.length) return this.acceptSelectionSuggestions();
    return this.acceptSuggestion();
  }

  render(item) {
    this.current = item;
    this.app.state.curation.selected = item;
    const star = $('star-selected');
    star.textContent = item.starred ? '★' : '☆';
    star.setAttribute('aria-pressed', String(item.starred));
    star.title = `${item.starred ? 'Unstar' : 'Star'} (key s)`;
    star.disabled = !this.writable;
    $('sample-note').readOnly = !this.writable;
    const chips = item.tags.map((tag) => {
      const suggested = tag in item.suggested;
      return el('span', { className: `chip tag${suggested ? ' suggested' : ''}`,
        title: suggested ? `suggested from the map (confidence ${item.suggested[tag]?.toFixed?.(2) ?? '?'})` : tag },
      el('span', { textContent: tag }),
      this.writable ? el('button', { type: 'button', className: 'chip-x', textContent: '×',
        ariaLabel: `Remove tag ${tag}`, onclick: () => this.tag([item.id], [], [tag]) }) : null);
    });
    $('sample-tags').replaceChildren(...chips);
    $('sample-note').value = item.note ?? '';
    $('sample-collections').textContent = item.collections.length
      ? `In ${item.collections.join(', ')}` : '';
  }

  async toggleStar() {
    if (!this.current || !this.writable) return;
    await this.star([this.current.id], !this.current.starred);
  }

  async star(ids, starred) {
    try {
      const answer = joined(await inChunks(this.app, ids,
        (chunk) => api.postJSON('/api/curation/star', { ids: chunk, starred }), 'Starring'));
      this.written(answer, ['starred']);
      this.app.status(`${starred ? 'Starred' : 'Unstarred'} ${samplesText(ids.length, answer.copies)}`);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  /** Add and remove tags; the server's answer (``copies``: other samples of their sounds,
   *  which carry the tags too), or null after an error, which the status line shows. */
  async tag(ids, add, remove = []) {
    try {
      const answer = joined(await inChunks(this.app, ids,
        (chunk) => api.postJSON('/api/curation/tags', { ids: chunk, add, remove }), 'Tagging'));
      const keys = [...add, ...remove].map((t) => (t.includes(':') ? t.split(':')[0] : 'tag'));
      this.written(answer, keys);
      return answer;
    } catch (error) {
      this.app.status(error.message, 'error');
      return null;
    }
  }

  async addTagFromInput(input, ids) {
    const tags = input.value.split(',').map((t) => t.trim()).filter(Boolean);
    if (!ids.length) return;
    if (!tags.length) {
      this.app.status('Type a tag first (several: separated by commas)', 'error');
      return;
    }
    const answer = await this.tag(ids, tags);
    if (answer) {
      input.value = '';
      this.app.status(`Tagged ${samplesText(ids.length, answer.copies)} ${tags.join(', ')}`);
    }
  }

  async saveNote() {
    if (!this.current || !this.writable) return;
    const note = $('sample-note').value;
    if ((this.current.note ?? '') === note) return;
    try {
      const item = await api.sendJSON('PUT', `/api/curation/notes/${this.current.id}`, { note });
      if (item.id === this.app.state.selected) this.render(item);
      this.app.status('Note saved');
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  /** After a write: the selected sample's curation, the summary, and the labels it changed. */
  written(answer, keys) {
    const mine = answer.items.find((item) => item.id === this.app.state.selected);
    if (mine) this.render(mine);
    this.app.infoChanged(answer.items.map((item) => item.id));
    this.refresh().catch(() => {});
    this.app.labelsChanged(new Set(keys));
  }

  // -- collections ---------------------------------------------------------------------------

  renderCollections() {
    const list = $('collection-list');
    list.replaceChildren(...this.collections.map((c) => el('li', { dataset: { name: c.name } },
      el('span', { className: 'name', textContent: c.name }),
      el('span', { className: 'n', textContent: `${c.n}${c.n_missing ? ` (${c.n_missing} missing)` : ''}` }),
      el('button', { type: 'button', className: 'small', textContent: 'Show', onclick: () => this.showCollection(c.name) }),
      el('button', { type: 'button', className: 'small', textContent: '▶', ariaLabel: `Play ${c.name}`,
        onclick: () => this.playCollection(c.name) }),
      el('button', { type: 'button', className: 'small', textContent: 'M3U', onclick: () => this.exportCollection(c.name, 'm3u') }),
      el('button', { type: 'button', className: 'small', textContent: 'CSV', onclick: () => this.exportCollection(c.name, 'csv') }),
      el('button', { type: 'button', className: 'small', textContent: 'ZIP', onclick: () => this.exportCollection(c.name, 'zip') }),
      this.writable ? el('button', { type: 'button', className: 'small', textContent: 'Rename',
        onclick: () => this.renameCollection(c.name) }) : null,
      this.writable ? el('button', { type: 'button', className: 'small', textContent: 'Delete',
        onclick: () => this.deleteCollection(c.name) }) : null)));
    const options = this.collections.map((c) => el('option', { value: c.name, textContent: c.name }));
    $('collection-target').replaceChildren(el('option', { value: '', textContent: 'collection…' }),
      ...options.map((o) => o.cloneNode(true)));
    $('filter-collection').replaceChildren(el('option', { value: '', textContent: 'collection…' }),
      ...options);
    $('filter-collection').value = this.app.filterCollection() ?? '';
  }

  async members(name) {
    const { items } = await api.getJSON(collectionPath(name));
    return items;
  }

  async createCollection(name, ids = []) {
    if (!name) return;
    try {
      let added = 0;
      if (ids.length) {
        ({ added } = joined(await inChunks(this.app, ids, (chunk, first) => api.postJSON(
          `${collectionPath(name)}/add${first ? '?create=true' : ''}`, { ids: chunk }), 'Adding')));
      } else {
        await api.postJSON('/api/collections', { name });
      }
      await this.refresh();
      if (ids.length) this.collectionChanged(name, name);
      this.app.status(`Collection ${name}${ids.length ? `: ${addedText(added, ids.length)}` : ' made'}`);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  async addToCollection(name, ids) {
    if (!ids.length) return;
    if (!name) {
      this.app.status('Choose the collection to add to', 'error');
      return;
    }
    try {
      const { added } = joined(await inChunks(this.app, ids,
        (chunk) => api.postJSON(`${collectionPath(name)}/add`, { ids: chunk }), 'Adding'));
      await this.refresh();
      this.collectionChanged(name, name);
      if (this.current && ids.includes(this.current.id)) await this.show(this.current.id);
      this.app.status(`${name}: ${addedText(added, ids.length)}`);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  async renameCollection(name) {
    const to = window.prompt(`Rename the collection ${name} to`, name);
    if (!to || to === name) return;
    try {
      await api.sendJSON('PATCH', collectionPath(name), { name: to });
      await this.refresh();
      this.collectionChanged(name, to);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  async deleteCollection(name) {
    if (!window.confirm(`Delete the collection ${name}? Its samples stay in the library.`)) return;
    try {
      await api.sendJSON('DELETE', collectionPath(name));
      await this.refresh();
      this.collectionChanged(name, null);
    } catch (error) {
      this.app.status(error.message, 'error');
    }
  }

  /** Collection ``name`` is now ``to`` (null: deleted), or has new members (``to`` = name):
   *  the map's collection filter follows it. */
  collectionChanged(name, to) {
    if (this.app.filterCollection() === name) this.app.setFilterCollection(to);
  }

  async showCollection(name) {
    this.app.setFilterCollection(name);
  }

  /** The ids of collection ``name``'s samples in the library; null (the reason shown) when
   *  they cannot be had. */
  async memberIds(name) {
    try {
      return (await this.members(name)).filter((m) => m.id !== null).map((m) => m.id);
    } catch (error) {
      this.app.status(error.message, 'error');
      return null;
    }
  }

  async exportCollection(name, format) {
    const ids = await this.memberIds(name);
    if (ids === null) return undefined;
    if (!ids.length) return this.app.status(`${name} has no sample in the library`, 'error');
    return this.app.selection.exportIds(ids, format);
  }

  /** Play a collection's samples one after the other (Esc or another play stops). */
  async playCollection(name) {
    const ids = await this.memberIds(name);
    if (ids === null) return;
    this.playing = { name, ids, index: -1 };
    this.app.state.curation.playing = { name, index: -1 };
    this.next();
  }

  stop() {
    this.playing = null;
    this.app.state.curation.playing = null;
  }

  next() {
    const p = this.playing;
    if (!p) return;
    p.index += 1;
    this.app.state.curation.playing = { name: p.name, index: p.index };
    if (p.index >= p.ids.length) {
      this.playing = null;
      this.app.state.curation.playing = null;
      return;
    }
    const index = p.index;
    this.app.playSample(p.ids[index], () => this.next()).then((started) => {
      if (this.playing !== p || p.index !== index) return;
      if (started === null) this.next(); // could not be had (the reason shown): the next one
      else if (!started) this.stop(); // the browser's autoplay rule, or another sound
    });
  }

  /** Whether the sound that started (``id``, ``key``) is the collection's item playing now. */
  isPlaying(id, key) {
    const p = this.playing;
    return Boolean(p) && key === 'sample' && p.ids[p.index] === id;
  }
}
