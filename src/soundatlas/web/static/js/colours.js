// Colours of labels: distinct colours for classes, a gradient for numbers (pitch, velocity).
// Colours are sRGB triples in 0..1, as the point shader writes them out unchanged.

const CLASSES = [
  '#4f9cf9', '#f5a142', '#5dd17a', '#f25f5c', '#b58cf5', '#f2d44e', '#45cfd1', '#f27fc9',
  '#9bd14a', '#e0875a', '#7c8cf8', '#c5e06b', '#5fb3a1', '#d96fa3', '#a8a8ff', '#ffb3a7',
  '#8fd3ff', '#e7c29c', '#b4f0b4', '#ff9f1c',
];
const RAMP = ['#5a3fd0', '#3f8fe8', '#2fc4b2', '#9bdc4a', '#f7d03c', '#f2843a', '#e8475f'];
export const NONE = '#5b6270'; // a sample without this label
export const UNIFORM = '#8fb8ff'; // colour by nothing

export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16 & 255) / 255, (v >> 8 & 255) / 255, (v & 255) / 255];
}

export const rgbToCss = ([r, g, b]) =>
  `rgb(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)})`;

function classColour(i) {
  if (i < CLASSES.length) return hexToRgb(CLASSES[i]);
  const hue = (i * 137.508) % 360; // golden angle: neighbours in the list stay apart
  return hslToRgb(hue / 360, 0.6, 0.62);
}

function hslToRgb(h, s, l) {
  const f = (n) => {
    const k = (n + h * 12) % 12;
    return l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return [f(0), f(8), f(4)];
}

/** The gradient at t in 0..1. */
export function rampColour(t) {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const a = hexToRgb(RAMP[i]);
  const b = hexToRgb(RAMP[i + 1]);
  const f = x - i;
  return a.map((v, j) => v + (b[j] - v) * f);
}

export const rampCss = () => `linear-gradient(to right, ${RAMP.join(', ')})`;

/** Whether every value is a finite number (then it gets a gradient). */
export function isNumeric(values) {
  return values.length > 1 && values.every((v) => v.trim() !== '' && Number.isFinite(Number(v)));
}

/**
 * How to colour a label with these sorted values: {kind: 'classes'|'ramp', table, min, max},
 * where table is a Float32Array of (values.length + 1) RGB triples, the first for "none", then
 * one per value code.
 */
export function scheme(values) {
  const numeric = isNumeric(values);
  const table = new Float32Array((values.length + 1) * 3);
  table.set(hexToRgb(NONE), 0);
  let min = 0;
  let max = 0;
  if (numeric) {
    const numbers = values.map(Number);
    min = Math.min(...numbers);
    max = Math.max(...numbers);
    numbers.forEach((v, i) => table.set(rampColour(max > min ? (v - min) / (max - min) : 0.5), 3 * (i + 1)));
  } else {
    values.forEach((_, i) => table.set(classColour(i), 3 * (i + 1)));
  }
  return { kind: numeric ? 'ramp' : 'classes', table, min, max };
}

/** The colour of value code ``code`` (-1: none) in a scheme's table, as CSS. */
export const codeCss = (table, code) =>
  rgbToCss(Array.from(table.subarray(3 * (code + 1), 3 * (code + 2))));
