// The map: every sample as one point of a THREE.Points, coloured and flagged through typed
// attribute arrays (no per-point objects), orbit/zoom/pan, a 2-D orthographic view, picking,
// screen projection, a tween between models, and overlays (trajectories, markers).
//
// Positions arrive normalised (the map fills about the unit sphere), so camera distances, point
// sizes and pick radii are the same for every model.

import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

export const BACKGROUND = '#0d1117';
/** Bits of the per-point flag attribute. */
export const FLAG = { DIM: 1, NEIGHBOUR: 2, SELECTED: 4, PICKED: 8, FOCUS: 16 };

const TWEEN_MS = 600;
const FLY_MS = 500;
const PICK_PX = 6; // hover and click reach at least this far from a point's centre
const PLANES = { // 2-D view: the axis looked down, and which way is up
  xy: { eye: [0, 0, 1], up: [0, 1, 0] },
  xz: { eye: [0, 1, 0], up: [0, 0, -1] },
  yz: { eye: [1, 0, 0], up: [0, 0, 1] },
};

const HOME_DIRECTION = [1.3, 0.95, 2.05]; // where the camera looks from at the whole-map view
const OUTLIER_RADIUS = 1.5; // world units (1: the 98th percentile point): beyond, not framed
const FIT_MARGIN = 0.08; // of the free half width and height, left empty around the framed map
const REF = 0.9; // pixels per world unit per half-height pixel at the whole-map view
const VERTEX = /* glsl */ `
#define REF ${REF.toFixed(3)}
attribute vec3 aFrom;
attribute vec3 aColor;
attribute float aFlag;
uniform float uMix;
uniform float uSize;
uniform float uHalfHeight;
varying vec3 vColor;
varying float vFlag;
float bit(float f, float b) { return mod(floor(f / b), 2.0); }
void main() {
  vec4 mv = modelViewMatrix * vec4(mix(aFrom, position, uMix), 1.0);
  gl_Position = projectionMatrix * mv;
  float big = max(max(bit(aFlag, 2.0), bit(aFlag, 4.0)), bit(aFlag, 16.0));
  float size = uSize * (big > 0.5 ? 1.6 : bit(aFlag, 8.0) > 0.5 ? 1.25 : bit(aFlag, 1.0) > 0.5 ? 0.7 : 1.0);
  // world size to pixels, for perspective (w = depth) and orthographic (w = 1) alike; then the
  // geometric mean with the size at the whole-map view, so that zooming in separates points
  float px = size * projectionMatrix[1][1] * uHalfHeight / gl_Position.w;
  gl_PointSize = clamp(sqrt(px * size * uHalfHeight * REF), 2.0, 64.0);
  vColor = aColor;
  vFlag = aFlag;
}`;

const FRAGMENT = /* glsl */ `
uniform vec3 uBackground;
varying vec3 vColor;
varying float vFlag;
float bit(float f, float b) { return mod(floor(f / b), 2.0); }
void main() {
  vec2 c = gl_PointCoord * 2.0 - 1.0;
  float r2 = dot(c, c);
  if (r2 > 1.0) discard;
  float f = floor(vFlag + 0.5); // interpolation may leave 1.9999 of a 2
  float selected = bit(f, 4.0), focus = bit(f, 16.0), neighbour = bit(f, 2.0), picked = bit(f, 8.0);
  float lit = max(max(selected, focus), max(neighbour, picked));
  vec3 col = vColor * (1.0 - 0.22 * r2);
  if (bit(f, 1.0) > 0.5 && lit < 0.5) col = mix(uBackground, vColor, 0.2);
  vec3 ring = selected > 0.5 ? vec3(1.0) : focus > 0.5 ? vec3(1.0, 0.8, 0.2)
            : neighbour > 0.5 ? vec3(1.0, 0.95, 0.65) : vec3(0.35, 0.9, 1.0);
  if (lit > 0.5) col = mix(col, ring, smoothstep(0.45, 0.6, r2));
  gl_FragColor = vec4(col, 1.0);
}`;

const ease = (t) => (t < 0.5 ? 4 * t * t * t : 1 - (-2 * t + 2) ** 3 / 2);

export class MapView {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.canvas = this.renderer.domElement;
    this.canvas.setAttribute('aria-label', 'map canvas');
    container.prepend(this.canvas);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    this.perspective = new THREE.PerspectiveCamera(45, 1, 0.005, 100);
    this.orthographic = new THREE.OrthographicCamera(-1, 1, 1, -1, -100, 100);
    this.camera = this.perspective;
    this.view = '3d';
    this.plane = 'xy';
    this.controls = new OrbitControls(this.camera, this.canvas);
    this.controls.enableDamping = true;
    this.controls.dampingFactor = 0.12;
    this.controls.zoomToCursor = true;
    this.controls.addEventListener('change', () => this.requestRender());
    // the user takes the view (a drag, the wheel): a glide still under way gives it up
    this.controls.addEventListener('start', () => this.stopFlight());
    this.homePose = null; // the camera as ``home`` left it (``showsWhole``)

    this.baseSize = 0.03;
    this.sizeScale = 1;
    this.material = new THREE.ShaderMaterial({
      vertexShader: VERTEX,
      fragmentShader: FRAGMENT,
      uniforms: {
        uMix: { value: 1 }, uSize: { value: this.baseSize }, uHalfHeight: { value: 300 },
        uBackground: { value: new THREE.Vector3(...hexTriple(BACKGROUND)) },
      },
    });
    this.points = new THREE.Points(new THREE.BufferGeometry(), this.material);
    this.points.frustumCulled = false;
    this.scene.add(this.points);
    this.overlays = new Map(); // key -> Object3D (lines, markers)
    this.raycaster = new THREE.Raycaster();
    this.n = 0;
    this.positions = new Float32Array(0);
    this.colours = new Float32Array(0);
    this.flags = new Float32Array(0);

    this.animations = new Set(); // functions(now) -> true while running
    this.onFrame = null; // called every frame (traces); returns true to keep rendering
    this.dirty = true;
    this.insets = { left: 0, right: 0, top: 0, bottom: 0 };
    this.home();
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.loop = this.loop.bind(this);
    requestAnimationFrame(this.loop);
  }

  // -- points ------------------------------------------------------------------------------

  /** Draw ``positions`` (Float32Array n x 3); with ``from`` (same layout), move from there. */
  setPoints(positions, from = null) {
    const n = positions.length / 3;
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute('position', new THREE.BufferAttribute(positions, 3));
    geometry.setAttribute('aFrom', new THREE.BufferAttribute(from || positions, 3));
    this.colours = new Float32Array(n * 3);
    this.flags = new Float32Array(n);
    geometry.setAttribute('aColor', new THREE.BufferAttribute(this.colours, 3));
    geometry.setAttribute('aFlag', new THREE.BufferAttribute(this.flags, 1));
    geometry.computeBoundingSphere();
    this.points.geometry.dispose();
    this.points.geometry = geometry;
    this.positions = positions;
    this.n = n;
    this.baseSize = Math.min(0.04, Math.max(0.006, 0.6 / Math.cbrt(Math.max(n, 1))));
    this.setSizeScale(this.sizeScale);
    if (from) this.tween();
    this.requestRender();
  }

  tween() {
    const uMix = this.material.uniforms.uMix;
    const start = performance.now();
    uMix.value = 0;
    this.animate((now) => {
      const t = Math.min(1, (now - start) / TWEEN_MS);
      uMix.value = ease(t);
      return t < 1;
    });
  }

  get moving() {
    return this.material.uniforms.uMix.value < 1;
  }

  updateColours() {
    this.points.geometry.getAttribute('aColor').needsUpdate = true;
    this.requestRender();
  }

  updateFlags() {
    this.points.geometry.getAttribute('aFlag').needsUpdate = true;
    this.requestRender();
  }

  setSizeScale(scale) {
    this.sizeScale = scale;
    this.material.uniforms.uSize.value = this.baseSize * scale;
    this.requestRender();
  }

  /** The world position of point ``i``. */
  position(i) {
    return new THREE.Vector3().fromArray(this.positions, 3 * i);
  }

  // -- picking and projection --------------------------------------------------------------

  /** The world length of one CSS pixel around the orbit target. */
  worldPerPixel(at = this.controls.target) {
    const height = this.canvas.clientHeight || 1;
    if (this.camera.isOrthographicCamera) {
      return (this.camera.top - this.camera.bottom) / this.camera.zoom / height;
    }
    const d = this.camera.position.distanceTo(at);
    return (2 * d * Math.tan(THREE.MathUtils.degToRad(this.camera.fov) / 2)) / height;
  }

  /** How many CSS pixels across a point at the orbit target is drawn (as the shader does). */
  pointPixels(wpp = this.worldPerPixel()) {
    const size = this.material.uniforms.uSize.value;
    const halfHeight = this.canvas.clientHeight / 2;
    return Math.sqrt((size / wpp) * size * halfHeight * REF);
  }

  /** The point under client position (x, y), or -1: the nearest to the ray among those within
   *  reach, preferring points that are not dimmed. */
  pick(x, y) {
    if (this.n === 0) return -1;
    const rect = this.canvas.getBoundingClientRect();
    const ndc = new THREE.Vector2(((x - rect.left) / rect.width) * 2 - 1,
      -((y - rect.top) / rect.height) * 2 + 1);
    this.camera.updateMatrixWorld();
    this.raycaster.setFromCamera(ndc, this.camera);
    const wpp = this.worldPerPixel();
    this.raycaster.params.Points.threshold = Math.max(this.pointPixels(wpp) / 2, PICK_PX) * wpp;
    let best = -1;
    let bestScore = Infinity;
    for (const hit of this.raycaster.intersectObject(this.points, false)) {
      const dimmed = this.flags[hit.index] & FLAG.DIM;
      const score = hit.distanceToRay + (dimmed ? 1e3 : 0);
      if (score < bestScore) [best, bestScore] = [hit.index, score];
    }
    return best;
  }

  /** Client (CSS pixel) position of world point ``v``, or null when behind the camera. */
  project(v) {
    this.camera.updateMatrixWorld();
    const p = v.clone().project(this.camera);
    if (p.z < -1 || p.z > 1) return null;
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + ((p.x + 1) / 2) * rect.width, y: rect.top + ((1 - p.y) / 2) * rect.height };
  }

  /** Indices of points whose projection (client CSS pixels) lies in ``bounds`` {x0, y0, x1, y1}
   *  and passes ``inside(x, y)``, except those ``skip(i)`` rejects. */
  inRegion(bounds, inside = () => true, skip = () => false) {
    const rect = this.canvas.getBoundingClientRect();
    this.camera.updateMatrixWorld();
    const m = new THREE.Matrix4().multiplyMatrices(this.camera.projectionMatrix,
      this.camera.matrixWorldInverse).elements;
    const p = this.positions;
    const out = [];
    for (let i = 0; i < this.n; i++) {
      const x = p[3 * i];
      const y = p[3 * i + 1];
      const z = p[3 * i + 2];
      const w = m[3] * x + m[7] * y + m[11] * z + m[15];
      if (w <= 0) continue;
      const cx = rect.left + ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) / 2 * rect.width;
      const cy = rect.top + (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) / 2 * rect.height;
      if (cx < bounds.x0 || cx > bounds.x1 || cy < bounds.y0 || cy > bounds.y1) continue;
      const depth = (m[2] * x + m[6] * y + m[10] * z + m[14]) / w;
      if (depth >= -1 && depth <= 1 && !skip(i) && inside(cx, cy)) out.push(i);
    }
    return out;
  }

  // -- camera ------------------------------------------------------------------------------

  /** Show the whole map: every point but far outliers in view, centred in the part of the
   * canvas the overlays leave free (``insets``, CSS pixels), looking from the home direction. */
  home() {
    this.stopFlight(); // a glide under way would pull the view away from the whole map
    if (this.view === '3d') {
      const dir = new THREE.Vector3(...HOME_DIRECTION).normalize();
      const right = new THREE.Vector3(0, 1, 0).cross(dir).normalize();
      const up = dir.clone().cross(right);
      const box = this.extent([right, up, dir]);
      let [cx, cy] = box.centre;
      const cz = box.centre[2];
      const { fx, fy } = this.freeFraction();
      const tanY = Math.tan(THREE.MathUtils.degToRad(this.perspective.fov) / 2);
      const tanX = tanY * this.perspective.aspect;
      let distance = 0.2;
      // Perspective enlarges what is near: the box's centre is not the picture's. Fit, find where
      // the picture's centre falls, move the target there, fit again; a few rounds converge.
      for (let round = 0; round < 6; round++) {
        distance = 0.2; // the nearest distance at which every point lies inside the free area
        for (const [x, y, z] of box.points) {
          const need = (z - cz) + Math.max(Math.abs(x - cx) / (tanX * fx), Math.abs(y - cy) / (tanY * fy));
          if (need > distance) distance = need;
        }
        const lo = [Infinity, Infinity];
        const hi = [-Infinity, -Infinity];
        for (const [x, y, z] of box.points) {
          const depth = distance - (z - cz);
          const sx = (x - cx) / depth;
          const sy = (y - cy) / depth;
          lo[0] = Math.min(lo[0], sx); hi[0] = Math.max(hi[0], sx);
          lo[1] = Math.min(lo[1], sy); hi[1] = Math.max(hi[1], sy);
        }
        cx += ((lo[0] + hi[0]) / 2) * distance;
        cy += ((lo[1] + hi[1]) / 2) * distance;
      }
      const target = right.clone().multiplyScalar(cx).addScaledVector(up, cy).addScaledVector(dir, cz);
      this.controls.target.copy(target);
      this.perspective.position.copy(target).addScaledVector(dir, distance);
    } else {
      const { eye, up } = PLANES[this.plane];
      const e = new THREE.Vector3(...eye);
      const u = new THREE.Vector3(...up);
      const r = u.clone().cross(e);
      const box = this.extent([r, u, e]);
      const [cx, cy, cz] = box.centre;
      this.controls.target.copy(r.clone().multiplyScalar(cx).addScaledVector(u, cy).addScaledVector(e, cz));
      this.placeOrthographic();
      const { fx, fy } = this.freeFraction();
      const halfW = (this.orthographic.right - this.orthographic.left) / 2;
      const halfH = (this.orthographic.top - this.orthographic.bottom) / 2;
      const w = Math.max(box.half[0] / (halfW * fx), box.half[1] / (halfH * fy), 1e-3);
      this.orthographic.zoom = 1 / w;
      this.orthographic.updateProjectionMatrix();
    }
    this.controls.update();
    this.requestRender();
    this.homePose = this.pose();
  }

  /** Where the camera is: view, plane, orbit target, position and the flat view's zoom. */
  pose() {
    return { view: this.view, plane: this.plane, target: this.controls.target.clone(),
      position: this.camera.position.clone(), zoom: this.orthographic.zoom };
  }

  /** Whether the camera is where ``home`` left it: the whole map in view. A click that selects
   *  a point (which the orbit controls see as the start of a drag) does not move it; a drag,
   *  the wheel or a glide does. */
  showsWhole() {
    const was = this.homePose;
    if (!was) return false;
    const now = this.pose();
    const near = (a, b) => a.distanceTo(b) <= 1e-4 * Math.max(1, b.length());
    return now.view === was.view && now.plane === was.plane && near(now.target, was.target)
      && near(now.position, was.position) && Math.abs(now.zoom - was.zoom) <= 1e-6 * was.zoom;
  }

  /** The points' coordinates along the axes ``[a, b, c]`` (far outliers left out), the centre
   * of their bounding box and its half sizes. */
  extent(axes) {
    const points = [];
    const lo = [Infinity, Infinity, Infinity];
    const hi = [-Infinity, -Infinity, -Infinity];
    const p = new THREE.Vector3();
    for (let i = 0; i < this.n; i++) {
      p.fromArray(this.positions, 3 * i);
      if (!(p.length() <= OUTLIER_RADIUS)) continue; // beyond 1.5x the 98th percentile radius
      const q = axes.map((a) => p.dot(a));
      for (let j = 0; j < 3; j++) {
        if (q[j] < lo[j]) lo[j] = q[j];
        if (q[j] > hi[j]) hi[j] = q[j];
      }
      points.push(q);
    }
    if (!points.length) return { points: [[1, 1, 1], [-1, -1, -1]], centre: [0, 0, 0], half: [1, 1, 1] };
    return { points, centre: lo.map((l, j) => (l + hi[j]) / 2), half: lo.map((l, j) => (hi[j] - l) / 2) };
  }

  /** The fraction of the canvas's half width and half height that the map may fill: the part
   * the overlays (``insets``) leave free, less a margin. */
  freeFraction() {
    const width = this.container.clientWidth || 1;
    const height = this.container.clientHeight || 1;
    const { left, right, top, bottom } = this.insets;
    return {
      fx: Math.max(0.2, (width - left - right) / width) * (1 - FIT_MARGIN),
      fy: Math.max(0.2, (height - top - bottom) / height) * (1 - FIT_MARGIN),
    };
  }

  /** Keep the map clear of overlays: CSS pixels on each side that they cover. The projection
   * is shifted so that the orbit target sits in the middle of what is left. */
  setInsets(insets) {
    this.insets = { left: 0, right: 0, top: 0, bottom: 0, ...insets };
    this.resize();
  }

  /** '3d' or '2d' (orthographic, looking down the axis that ``plane`` leaves out). A view of
   * the whole map gives the whole map in the other view (or plane), framed as ``home`` frames
   * it; any other keeps its centre and scale. */
  setView(view, plane = this.plane) {
    const whole = this.showsWhole();
    this.stopFlight(); // a glide is of the camera being left
    const target = this.controls.target.clone();
    this.plane = plane;
    const halfFov = Math.tan(THREE.MathUtils.degToRad(this.perspective.fov) / 2);
    if (view === '2d') {
      if (this.view === '3d') { // keep the scale the perspective view showed
        const visible = 2 * this.perspective.position.distanceTo(target) * halfFov;
        this.orthographic.zoom = (this.orthographic.top - this.orthographic.bottom) / visible;
        this.left3d = target.clone(); // where the perspective camera looked from
      }
      this.camera = this.orthographic;
      this.placeOrthographic();
    } else {
      if (this.view === '2d' && this.left3d) {
        // back to 3-D where 2-D panned, zoomed or flew to: the same direction as before, at
        // the distance that shows what the flat view showed
        const visible = (this.orthographic.top - this.orthographic.bottom) / this.orthographic.zoom;
        const direction = this.perspective.position.clone().sub(this.left3d);
        if (direction.lengthSq() === 0) direction.set(0, 0, 1);
        this.perspective.position.copy(target).add(direction.setLength(visible / (2 * halfFov)));
      }
      this.camera = this.perspective;
    }
    this.view = view;
    this.controls.object = this.camera;
    this.controls.enableRotate = view === '3d';
    // in 2-D the left button drags the map around
    this.controls.mouseButtons.LEFT = view === '3d' ? THREE.MOUSE.ROTATE : THREE.MOUSE.PAN;
    this.controls.touches.ONE = view === '3d' ? THREE.TOUCH.ROTATE : THREE.TOUCH.PAN;
    this.controls.target.copy(target);
    this.camera.updateProjectionMatrix();
    this.controls.update();
    this.resize();
    if (whole) this.home();
  }

  placeOrthographic() {
    const { eye, up } = PLANES[this.plane];
    this.orthographic.up.set(...up);
    this.orthographic.position.copy(this.controls.target).add(new THREE.Vector3(...eye).multiplyScalar(10));
    this.orthographic.lookAt(this.controls.target);
  }

  /** Glide the orbit target to world point ``v`` and come closer. */
  flyTo(v) {
    const target0 = this.controls.target.clone();
    const eye0 = this.camera.position.clone();
    const offset = eye0.clone().sub(target0);
    const distance = Math.min(offset.length(), 0.6);
    const eye1 = v.clone().add(offset.setLength(distance));
    const zoom0 = this.orthographic.zoom;
    const zoom1 = Math.max(zoom0, 3);
    const start = performance.now();
    this.stopFlight(); // one glide at a time: the last asked for
    this.flight = (now) => {
      const t = ease(Math.min(1, (now - start) / FLY_MS));
      this.controls.target.lerpVectors(target0, v, t);
      if (this.view === '3d') {
        this.camera.position.lerpVectors(eye0, eye1, t);
      } else {
        this.orthographic.zoom = zoom0 + (zoom1 - zoom0) * t;
        this.orthographic.updateProjectionMatrix();
        this.placeOrthographic();
      }
      this.controls.update();
      return t < 1;
    };
    this.animate(this.flight);
  }

  /** End a glide (:meth:`flyTo`) where it is. */
  stopFlight() {
    if (this.flight) this.animations.delete(this.flight);
    this.flight = null;
  }

  // -- overlays: trajectories and markers --------------------------------------------------

  /** A path through world points ``positions`` (Float32Array n x 3), coloured start to end. */
  setPath(key, positions, startColour, endColour) {
    this.remove(key);
    const n = positions.length / 3;
    const colours = new Float32Array(n * 3);
    const a = new THREE.Color(startColour);
    const b = new THREE.Color(endColour);
    const c = new THREE.Color();
    for (let i = 0; i < n; i++) c.lerpColors(a, b, n > 1 ? i / (n - 1) : 0).toArray(colours, 3 * i);
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute('position', new THREE.BufferAttribute(positions, 3));
    geometry.setAttribute('color', new THREE.BufferAttribute(colours, 3));
    const group = new THREE.Group();
    const line = new THREE.Line(geometry, new THREE.LineBasicMaterial({
      vertexColors: true, transparent: true, opacity: 0.9, depthTest: false }));
    const dots = new THREE.Points(geometry, new THREE.PointsMaterial({
      vertexColors: true, size: 3, sizeAttenuation: false, depthTest: false }));
    const tracedGeometry = new THREE.BufferGeometry(); // the part already played, in white
    tracedGeometry.setAttribute('position', geometry.getAttribute('position'));
    tracedGeometry.setDrawRange(0, 0);
    const traced = new THREE.Line(tracedGeometry, new THREE.LineBasicMaterial({
      color: '#ffffff', depthTest: false }));
    for (const o of [line, dots, traced]) {
      o.renderOrder = 5;
      o.frustumCulled = false;
      group.add(o);
    }
    group.userData = { positions, traced };
    this.add(key, group);
  }

  /** Move the trace of path ``key`` to fractional frame ``frame`` (null: hide it). */
  trace(key, frame) {
    const path = this.overlays.get(key);
    if (!path) return;
    const { positions, traced } = path.userData;
    const n = positions.length / 3;
    const marker = `${key}:trace`;
    if (frame === null) {
      traced.geometry.setDrawRange(0, 0);
      this.remove(marker);
      this.requestRender();
      return;
    }
    const i = Math.min(n - 1, Math.max(0, Math.floor(frame)));
    const f = Math.min(1, frame - i);
    const j = Math.min(n - 1, i + 1);
    const v = new THREE.Vector3().fromArray(positions, 3 * i)
      .lerp(new THREE.Vector3().fromArray(positions, 3 * j), f);
    traced.geometry.setDrawRange(0, i + 1);
    if (!this.overlays.has(marker)) this.setMarker(marker, v, '#ffffff', '', 14);
    this.overlays.get(marker).position.copy(v);
    this.requestRender();
  }

  /** A round marker of ``colour`` at world ``v``, with an optional letter; ``px`` across. */
  setMarker(key, v, colour, letter = '', px = 22) {
    this.remove(key);
    const sprite = new THREE.Sprite(new THREE.SpriteMaterial({
      map: markerTexture(colour, letter), depthTest: false, transparent: true }));
    sprite.position.copy(v);
    sprite.renderOrder = 10;
    sprite.userData.px = px;
    this.add(key, sprite);
  }

  add(key, object) {
    this.overlays.set(key, object);
    this.scene.add(object);
    this.requestRender();
  }

  remove(key) {
    const object = this.overlays.get(key);
    if (!object) return;
    this.scene.remove(object);
    object.traverse((o) => {
      o.geometry?.dispose();
      o.material?.map?.dispose();
      o.material?.dispose();
    });
    this.overlays.delete(key);
    this.requestRender();
  }

  /** Remove every overlay whose key starts with ``prefix``. */
  removeAll(prefix) {
    for (const key of [...this.overlays.keys()]) if (key.startsWith(prefix)) this.remove(key);
  }

  // -- the frame loop (renders only when something changed) --------------------------------

  animate(step) {
    this.animations.add(step);
    this.requestRender();
  }

  requestRender() {
    this.dirty = true;
  }

  loop(now) {
    requestAnimationFrame(this.loop);
    for (const step of this.animations) {
      if (!step(now)) this.animations.delete(step);
      this.dirty = true;
    }
    this.controls.update();
    if (this.onFrame && this.onFrame(now)) this.dirty = true;
    if (this.dirty) this.renderNow();
  }

  renderNow() {
    this.dirty = false;
    for (const object of this.overlays.values()) { // markers keep their size on screen
      if (object.isSprite) object.scale.setScalar(object.userData.px * this.worldPerPixel(object.position));
    }
    this.renderer.render(this.scene, this.camera);
  }

  resize() {
    const width = this.container.clientWidth || 1;
    const height = this.container.clientHeight || 1;
    this.renderer.setSize(width, height);
    this.perspective.aspect = width / height;
    const half = 1.25;
    Object.assign(this.orthographic, { left: -half * width / height, right: half * width / height,
      top: half, bottom: -half });
    // the orbit target projects to the middle of the area the overlays leave free
    const { left, right, top, bottom } = this.insets;
    for (const camera of [this.perspective, this.orthographic]) {
      if (left || right || top || bottom) {
        camera.setViewOffset(width, height, (right - left) / 2, (bottom - top) / 2, width, height);
      } else {
        camera.clearViewOffset();
      }
      camera.updateProjectionMatrix();
    }
    this.material.uniforms.uHalfHeight.value = this.renderer.getDrawingBufferSize(new THREE.Vector2()).y / 2;
    this.requestRender();
  }
}

function hexTriple(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16 & 255) / 255, (v >> 8 & 255) / 255, (v & 255) / 255];
}

function markerTexture(colour, letter) {
  const size = 64;
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = size;
  const g = canvas.getContext('2d');
  g.beginPath();
  g.arc(size / 2, size / 2, size / 2 - 4, 0, 2 * Math.PI);
  g.fillStyle = colour;
  g.fill();
  g.lineWidth = 4;
  g.strokeStyle = '#0d1117';
  g.stroke();
  if (letter) {
    g.fillStyle = '#0d1117';
    g.font = `bold ${letter.length > 1 ? 22 : 34}px system-ui, sans-serif`;
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(letter, size / 2, size / 2 + 2);
  }
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  return texture;
}
