"""Probe (analysis; docs/RESULTS.md, "A procedural second maker"): a second 'maker' of the demo
set's 24 classes, made procedurally, for the leave-OPL3-out protocol.

Additive source-filter instruments written from generic acoustics (not from any SoundFont):
each class has a source (bowed, clarinet, double reed, sax, brass, flute, plucked, distorted),
body/bore formants, an attack/release, vibrato and noise; every note draws its own variation
(formants x0.85..1.18, brightness, attack, vibrato, noise) from a seed.

Every note is a function of (class, pitch, velocity, articulation): the same files on every run
on a given platform and NumPy/SciPy version. 16 kHz mono (the CQT's rate), each note held 0.4 s
(short) or 1.8 s (long) plus a 0.6 s release tail, as the demo set renders; bank ``SynthGM``.

    python tools/probes/synth_maker.py OUT_DIR

writes OUT_DIR/synthgm/<class>/<class>_<pitch>_v<velocity>_<articulation>.wav (5,706 files,
about 2 minutes on one core) and OUT_DIR/synthgm.csv (manifest rows without a header, in the
columns path,instrument,pitch,velocity,articulation,bank,drum,drum_class,kit).
"""

import csv
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from soundatlas.demo.gm import DEFAULT_CLASSES
from soundatlas.demo.render import RELEASE_TAIL
from soundatlas.demo.sets import DEFAULT_ARTICULATIONS, DEFAULT_VELOCITIES
from soundatlas.procedural import fade_out

SR = 16000

# class -> (source, formants [(Hz, gain dB, bandwidth ratio)], tilt dB/oct, attack s, release s,
#           vibrato cents, breath noise level, gamma: how much brighter loud is)
SPEC = {
    "violin": ("bowed", [(290, 6, .25), (480, 4, .3), (2900, 9, .5)], -4.5, .07, .18, 18, .05, .25),
    "viola": ("bowed", [(230, 6, .25), (390, 5, .3), (2300, 7, .5)], -5.0, .08, .2, 16, .05, .25),
    "cello": ("bowed", [(120, 6, .3), (210, 6, .3), (1500, 6, .5)], -5.5, .09, .22, 14, .04, .25),
    "contrabass": ("bowed", [(70, 6, .3), (110, 5, .3), (800, 5, .5)], -6.5, .11, .25, 10, .04, .25),
    "clarinet": ("clarinet", [(1500, 3, .6)], -6.0, .035, .12, 0, .02, .35),
    "oboe": ("reed2", [(1150, 12, .3), (2900, 7, .3)], -3.0, .03, .1, 14, .02, .3),
    "english_horn": ("reed2", [(950, 11, .3), (2300, 6, .35)], -3.5, .035, .12, 12, .02, .3),
    "bassoon": ("reed2", [(480, 11, .3), (1200, 6, .35)], -4.0, .04, .12, 8, .02, .3),
    "soprano_sax": ("sax", [(900, 8, .4), (2600, 6, .4)], -3.5, .04, .12, 20, .06, .45),
    "alto_sax": ("sax", [(700, 8, .4), (2200, 6, .4)], -3.8, .04, .12, 18, .06, .45),
    "tenor_sax": ("sax", [(550, 8, .4), (1800, 6, .4)], -4.0, .045, .13, 16, .06, .45),
    "baritone_sax": ("sax", [(400, 8, .4), (1400, 5, .45)], -4.5, .05, .14, 12, .06, .45),
    "trumpet": ("brass", [(1300, 8, .6)], -3.0, .03, .1, 6, .01, .8),
    "muted_trumpet": ("brass_mute", [(1800, 14, .25)], -2.5, .03, .09, 6, .02, .6),
    "trombone": ("brass", [(550, 8, .6)], -4.0, .04, .12, 5, .01, .8),
    "french_horn": ("brass", [(380, 8, .5)], -8.0, .06, .18, 3, .01, .7),
    "tuba": ("brass", [(250, 8, .6)], -8.5, .07, .18, 3, .01, .7),
    "flute": ("flute", [], -14.0, .06, .12, 20, .10, .3),
    "piccolo": ("flute", [], -16.0, .04, .1, 18, .08, .3),
    "recorder": ("flute", [], -20.0, .025, .08, 0, .05, .2),
    "pan_flute": ("flute", [], -18.0, .05, .15, 10, .25, .3),
    "harp": ("pluck", [(400, 3, .8)], -7.0, .002, .3, 0, .0, .8),
    "nylon_guitar": ("pluck", [(105, 6, .3), (210, 5, .3)], -5.0, .002, .15, 0, .0, .8),
    "distortion_guitar": ("dist", [(110, 6, .4)], -3.0, .003, .1, 0, .0, .5),
}


# class -> Hz above which the source falls a further 24 dB/octave (times the note's formant scale)
ROLLOFF = {
    "violin": 4000, "viola": 3200, "cello": 2200, "contrabass": 1200, "clarinet": 3000,
    "oboe": 4000, "english_horn": 3200, "bassoon": 2000, "soprano_sax": 4000, "alto_sax": 3200,
    "tenor_sax": 2600, "baritone_sax": 2000, "trumpet": 4000, "muted_trumpet": 5000,
    "trombone": 2500, "french_horn": 1200, "tuba": 800, "flute": 6000, "piccolo": 7000,
    "recorder": 6000, "pan_flute": 6000, "harp": 3000, "nylon_guitar": 2500,
    "distortion_guitar": 4000,
}


def midi_hz(p):
    return 440.0 * 2.0 ** ((p - 69.0) / 12.0)


def formant_gain(freqs, formants, scale):
    g = np.zeros_like(freqs)
    for f, db, bw in formants:
        fc = f * scale
        width = bw * fc
        g += db * np.exp(-0.5 * ((freqs - fc) / width) ** 2)
    return g


def envelope(n_held, n_total, attack, release, sr, plucked, tau):
    t = np.arange(n_total) / sr
    env = np.minimum(1.0, t / max(attack, 1e-4))
    if plucked:
        env = env * np.exp(-t / tau)
    else:
        # a small overshoot-decay after the attack (a "blip"), then steady
        env = env * (1.0 + 0.15 * np.exp(-np.maximum(t - attack, 0) / 0.08) * (t >= attack))
    off = n_held / sr
    after = t > off
    env[after] *= np.exp(-(t[after] - off) / (release / 4.0))
    return env


def note(cls, pitch, velocity, held, rng):
    source, formants, tilt, attack, release, vib, breath, gamma = SPEC[cls]
    sr = SR
    scale = rng.uniform(0.85, 1.18)
    tilt = tilt + rng.uniform(-1.5, 1.5)
    attack *= rng.uniform(0.7, 1.4)
    release *= rng.uniform(0.8, 1.3)
    vib_cents = vib * rng.uniform(0.5, 1.4) if vib else 0.0
    vib_rate = rng.uniform(4.5, 6.5)
    breath *= rng.uniform(0.6, 1.5)
    vel = velocity / 127.0
    f0 = midi_hz(pitch + rng.uniform(-0.05, 0.05))
    plucked = source in ("pluck", "dist")  # inharmonic partials; only "pluck" decays per partial
    tau = rng.uniform(1.2, 2.5) if source == "pluck" else rng.uniform(2.0, 4.0)
    tau = tau * (f0 / 200.0) ** -0.4  # a plucked string's decay: lower rings longer
    n_held = round(held * sr)
    n = n_held + round(RELEASE_TAIL * sr)
    t = np.arange(n) / sr
    env = envelope(n_held, n, attack, release, sr, source == "pluck", tau)
    # vibrato with a delayed onset
    vib_gain = np.clip((t - 0.25) / 0.3, 0, 1) if vib_cents else 0.0
    freq = f0 * 2.0 ** (vib_cents * vib_gain * np.sin(2 * np.pi * vib_rate * t) / 1200.0)
    drift = np.convolve(rng.standard_normal(n), np.ones(400) / 20.0, "same") / 20  # slow jitter
    freq = freq * (1.0 + 0.0015 * drift)
    cycles = np.cumsum(freq) / sr
    k_max = int(7600 // f0)
    ks = np.arange(1, max(k_max, 1) + 1)
    # source spectrum (dB) per harmonic
    src = tilt * np.log2(ks)
    if source == "clarinet":
        odd_weak = (ks % 2 == 0) & (ks * f0 < 1500 * scale)
        src = src - 18.0 * odd_weak
    elif source == "reed2":
        src = -2.0 * np.log2(ks) + tilt * 0.5 * np.log2(ks)
        src[0] -= 6.0
    elif source == "brass_mute":
        src = src - 20.0 * (ks * f0 < 900 * scale)
    elif source == "flute":
        src = src + 4.0 * (ks == 2)
    elif source in ("pluck", "dist"):
        beta = rng.uniform(0.1, 0.25)  # plucking position
        src = src + 20 * np.log10(np.abs(np.sin(np.pi * ks * beta)) + 0.05)
    src = src + formant_gain(ks * f0, formants, scale) + rng.normal(0, 1.5, len(ks))
    src = src - 24.0 * np.log2(np.maximum(1.0, ks * f0 / (ROLLOFF[cls] * scale)))
    src = src - gamma * (1.0 - vel) * 6.0 * np.log2(ks)  # softer is darker
    amp = 10.0 ** (src / 20.0)
    inharm = rng.uniform(0.5e-4, 2e-4) if plucked else 0.0
    y = np.zeros(n)
    envc = np.maximum(env, 1e-6)
    for k, a in zip(ks, amp):
        if a < 1e-4:
            continue
        fk_ratio = k * math.sqrt(1.0 + inharm * k * k)
        if fk_ratio * f0 > 7800:
            break
        if source == "pluck":
            ek = env * np.exp(-t * (k - 1) * 0.08 / tau * (1 + 2 * (k * f0 > 2000)))
        else:
            # louder = brighter; in the attack, the top harmonics come in last
            ek = envc ** (1.0 + gamma * (1.0 - vel) * math.log2(k))
            if source in ("brass", "brass_mute"):
                ek = ek * np.minimum(1.0, t / (attack * (1.0 + 0.3 * math.log2(k))))
        y += a * ek * np.sin(2 * np.pi * fk_ratio * cycles + rng.uniform(0, 2 * np.pi))
    if source == "dist":
        drive = rng.uniform(6, 20)
        decay = np.exp(-t / tau)
        after = t > held
        decay[after] *= np.exp(-(t[after] - held) / 0.05)
        y = np.tanh(drive * y / (np.max(np.abs(y)) + 1e-9) * decay)
        cabinet = butter(2, min(rng.uniform(3000, 5000), 7000), "lowpass", fs=sr, output="sos")
        y = sosfilt(cabinet, y)
        y *= np.minimum(1.0, t / 0.003)
    if breath > 0:
        nz = rng.standard_normal(n)
        lo = max(200.0, f0 * 0.8)
        hi = min(7500.0, f0 * rng.uniform(4, 10))
        if hi > lo * 1.2:
            nz = sosfilt(butter(2, [lo, hi], "bandpass", fs=sr, output="sos"), nz)
        chiff = 1.0 + (4.0 if source == "flute" else 1.0) * np.exp(-t / 0.03)
        y += breath * np.std(y) * 3.0 * nz / (np.std(nz) + 1e-9) * env * chiff
    y = y / (np.max(np.abs(y)) + 1e-9) * (0.25 + 0.6 * vel)
    nf = round(0.005 * sr)
    y[-nf:] *= fade_out(nf)
    return y.astype(np.float32)


def main(out):
    out = Path(out)
    rows = []
    for ci, (cls, (_, low, high)) in enumerate(sorted(DEFAULT_CLASSES.items())):
        (out / "synthgm" / cls).mkdir(parents=True, exist_ok=True)
        for pitch in range(low, high + 1):
            for v in DEFAULT_VELOCITIES:
                for art, held in DEFAULT_ARTICULATIONS.items():
                    rng = np.random.default_rng([29, ci, pitch, v, int(held * 10)])
                    y = note(cls, pitch, v, held, rng)
                    rel = f"synthgm/{cls}/{cls}_{pitch:03d}_v{v:03d}_{art}.wav"
                    sf.write(out / rel, y, SR, subtype="PCM_16")
                    rows.append([rel, cls, pitch, v, art, "SynthGM", "", "", ""])
        print(cls, flush=True)
    with open(out / "synthgm.csv", "w", newline="") as f:  # beside synthgm/, not inside it
        csv.writer(f).writerows(rows)


if __name__ == "__main__":
    main(sys.argv[1])
