// Typed-array helpers for point sets: served coordinates -> the map's world (about unit radius),
// id lookups by binary search and merge walks over ascending ids. No per-point objects.

/** Which served coordinate each world axis shows: the identity, or with a pitch axis
 *  (``up``, a served coordinate) that coordinate on world y, the page's up. A swap, so it is
 *  its own inverse. */
export function axisOrder(up) {
  const order = [0, 1, 2];
  if (up === 0 || up === 2) [order[1], order[up]] = [up, 1];
  return order;
}

/** How to bring a model's points (n x dims) to a map of about unit radius: {center, scale,
 *  order} (``center`` per served coordinate, ``order`` from ``axisOrder(up)``). */
export function normaliser(points, n, dims, up = null) {
  const d = Math.min(dims, 3);
  const center = [0, 0, 0];
  for (let j = 0; j < d; j++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = points[i * dims + j];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    center[j] = n ? (lo + hi) / 2 : 0;
  }
  const radius = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += (points[i * dims + j] - center[j]) ** 2;
    radius[i] = Math.sqrt(s);
  }
  radius.sort();
  // the 98th percentile: a few far outliers do not shrink the rest of the map
  const r = radius[Math.floor(0.98 * (n - 1))] || radius[n - 1] || 1;
  return { center, scale: 1 / r, order: axisOrder(up) };
}

/** ``n`` rows of ``dims`` served coordinates as world x, y, z, in ``norm.order`` (a 4th
 *  dimension on is dropped; a 2-D map lies in z = 0). */
export function toWorld(values, n, dims, norm) {
  const out = new Float32Array(n * 3);
  const { order } = norm;
  for (let i = 0; i < n; i++) {
    for (let w = 0; w < 3; w++) {
      const j = order[w];
      if (j < dims) out[3 * i + w] = (values[i * dims + j] - norm.center[j]) * norm.scale;
    }
  }
  return out;
}

/** A world point (x, y, z) back in served coordinates (the inverse of ``toWorld``). */
export function fromWorld(world, norm) {
  const { order } = norm;
  const out = [0, 0, 0];
  for (let w = 0; w < 3; w++) out[order[w]] = world[w] / norm.scale + norm.center[order[w]];
  return out;
}

/** Where each new point starts its move: the old place of the same id, else its new place. */
export function matchedPositions(oldIds, oldWorld, newIds, newWorld) {
  const from = Float32Array.from(newWorld);
  for (let i = 0, j = 0; i < newIds.length && j < oldIds.length;) {
    if (newIds[i] === oldIds[j]) {
      from.set(oldWorld.subarray(3 * j, 3 * j + 3), 3 * i);
      i++;
      j++;
    } else if (newIds[i] < oldIds[j]) i++;
    else j++;
  }
  return from;
}

/** For each of ``ids`` (ascending), its row in ``all`` (ascending), or -1. */
export function rowsOf(all, ids) {
  const rows = new Int32Array(ids.length).fill(-1);
  for (let i = 0, j = 0; i < ids.length && j < all.length;) {
    if (ids[i] === all[j]) rows[i++] = j++;
    else if (ids[i] < all[j]) i++;
    else j++;
  }
  return rows;
}

/** A 0/1 mask over ``ids`` (ascending): which are in ``wanted`` (ascending). */
export function maskOf(wanted, ids) {
  const rows = rowsOf(wanted, ids);
  const mask = new Uint8Array(ids.length);
  for (let i = 0; i < rows.length; i++) mask[i] = rows[i] >= 0 ? 1 : 0;
  return mask;
}

/** The index of ``id`` in ascending ``sorted``, or -1. */
export function search(sorted, id) {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] === id) return mid;
    if (sorted[mid] < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Frames ``first``..``last`` (inclusive) of world points ``world`` (n x 3): a trajectory's
 *  sounding part (the server's X-Sounding-First and -Last, or a query's ``sounding``). */
export function sounding(world, [first, last]) {
  return world.subarray(3 * first, 3 * (last + 1));
}

/** The per-axis median of world points (n x 3), as [x, y, z]. */
export function medianOf(world) {
  const n = world.length / 3;
  return [0, 1, 2].map((j) => {
    const column = Float32Array.from({ length: n }, (_, i) => world[3 * i + j]).sort();
    return n % 2 ? column[(n - 1) / 2] : (column[n / 2 - 1] + column[n / 2]) / 2;
  });
}
