"""The evaluation's sync probe: a per-speaker linear probe from lip shape to speech energy.

It shares nothing with the training sync expert (no network, no mel features, no
learned weights outside this file): landmarks from the face tracker and band
energies of the raw waveform only.

1. Lead. metrics.av_offset cross-correlates the real training frames' lip opening
   with their speech energy: articulation leads sound by a speaker-dependent 1-5
   frames (docs/architecture.md, "Four syncs").
2. Probe. A ridge regression reads the speech-energy change at frame t + lead from
   the lip shape (8 principal components of the 40 lip landmarks, and their change)
   at frames t-1..t+1, fitted on the real training frames.
3. Offset. A video's predicted energy is cross-correlated with the energy of the
   speech it was driven by over +-15 frames; 0 means "in sync as the speaker is".

Why not the opening alone: one number per frame leaves a 2-3 s window (a short
clip's held-out 10 %) ambiguous. On 78-frame windows of the three test clips, the
opening alone found the right offset within one frame in 84/98/96 % of windows and
got the held-out tail of reagan_address wrong by 7 frames; the probe, fitted without
the window, got 100/100/97 % and every held-out tail within one frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import metrics as M
from ..prepare.faces import LIPS

COMPONENTS = 8      # principal components of lip shape
CONTEXT = 1         # frames either side of t the probe reads
RIDGE = 0.1         # ridge strength, relative to the frame count (features are standardised)
MAX_LAG = M.MAX_LAG
_LIPS = np.array(sorted(set(LIPS)))


def lip_shape(landmarks: np.ndarray) -> np.ndarray:
    """(N, 2L) lip landmarks centred on the lips, rolled level and divided by inter-ocular distance."""
    lm = np.asarray(landmarks, np.float64)[..., :2]
    eyes = lm[:, M.EYE_RIGHT] - lm[:, M.EYE_LEFT]                        # (N, 2)
    iod = np.linalg.norm(eyes, axis=-1)
    c, s = eyes[:, 0] / np.maximum(iod, 1e-9), eyes[:, 1] / np.maximum(iod, 1e-9)
    pts = lm[:, _LIPS] - lm[:, _LIPS].mean(axis=1, keepdims=True)       # (N, L, 2)
    x = (c[:, None] * pts[..., 0] + s[:, None] * pts[..., 1]) / iod[:, None]
    y = (-s[:, None] * pts[..., 0] + c[:, None] * pts[..., 1]) / iod[:, None]
    return M._fill_nan(np.concatenate([x, y], axis=1))                 # (N, 2L)


def _context(f: np.ndarray, k: int) -> np.ndarray:
    n = len(f)
    return np.concatenate([f[np.clip(np.arange(n) + d, 0, n - 1)] for d in range(-k, k + 1)], axis=1)


@dataclass
class SyncProbe:
    """Result of fit_probe: everything predict() needs, plus what the report shows."""

    lead: int                 # frames the speaker's lips lead the sound
    lead_confidence: float
    shape_mean: np.ndarray    # (2L,)
    basis: np.ndarray         # (2L, COMPONENTS)
    x_mean: np.ndarray        # (F,)
    x_std: np.ndarray         # (F,)
    weights: np.ndarray       # (F, B)
    y_mean: np.ndarray        # (B,)
    scale: np.ndarray         # (B,) spread of the prediction on the real training frames

    def predict(self, landmarks: np.ndarray) -> np.ndarray:
        """(N, B) predicted speech-energy change at t + lead for N consecutive frames."""
        pcs = (lip_shape(landmarks) - self.shape_mean) @ self.basis      # (N, C)
        x = _context(np.concatenate([pcs, M._motion(pcs)], axis=1), CONTEXT)  # (N, 2C(2K+1))
        return ((x - self.x_mean) / self.x_std) @ self.weights + self.y_mean

    def offset(self, landmarks: np.ndarray, envelope: np.ndarray, envelope_start: int = 0,
               max_lag: int = MAX_LAG) -> M.SyncReading:
        """Offset of a video against the speech it was driven by; 0 is in sync (see correlate)."""
        return correlate(self.predict(landmarks), envelope, self.lead, envelope_start, self.scale, max_lag)


def fit_probe(landmarks: np.ndarray, envelope: np.ndarray) -> SyncProbe:
    """Fit the probe on a speaker's real frames: (N, 478, 2+) landmarks and (N, B) speech_envelope."""
    lm = np.asarray(landmarks, np.float64)
    env = np.asarray(envelope, np.float64)
    lead = M.av_offset(M.lip_opening(lm), env)
    shape = lip_shape(lm)
    mean = shape.mean(axis=0)
    _, _, vt = np.linalg.svd(shape - mean, full_matrices=False)
    basis = vt[:COMPONENTS].T                                            # (2L, C)
    pcs = (shape - mean) @ basis
    x = _context(np.concatenate([pcs, M._motion(pcs)], axis=1), CONTEXT)
    n = len(x)
    y = M._motion(env)[np.clip(np.arange(n) + lead.offset, 0, n - 1)]   # energy change at t + lead
    x_mean, x_std = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = (x - x_mean) / x_std
    y_mean = y.mean(axis=0)
    w = np.linalg.solve(xs.T @ xs + RIDGE * n * np.eye(xs.shape[1]), xs.T @ (y - y_mean))
    return SyncProbe(lead=lead.offset, lead_confidence=lead.confidence, shape_mean=mean, basis=basis,
                     x_mean=x_mean, x_std=x_std, weights=w, y_mean=y_mean, scale=(xs @ w).std(axis=0))


def correlate(pred: np.ndarray, envelope: np.ndarray, lead: int = 0, envelope_start: int = 0,
              scale: np.ndarray | None = None, max_lag: int = MAX_LAG) -> M.SyncReading:
    """Offset between predicted and heard speech energy, by normalised cross-correlation.

    pred: (N, B) SyncProbe.predict of N frames. envelope: (M, B) speech_envelope whose
    row envelope_start belongs to frame 0. Lag k pairs frame t's prediction with the
    heard energy at t + lead + k, so a video in sync as the speaker is reads 0 and
    positive means the lips move before the sound. scale: (B,) the real speaker's
    prediction spread per band; given, it replaces the video's own spread, so a nearly still
    mouth scores a low confidence instead of a real speaker's (the offset is unchanged).
    """
    pred = np.asarray(pred, np.float64)
    a = M._motion(np.asarray(envelope, np.float64).reshape(len(envelope), -1))   # (M, B)
    n, m = len(pred), len(a)
    max_lag = int(min(max_lag, max(n // 3, 1)))
    lags = np.arange(-max_lag, max_lag + 1)
    scales = [None] * a.shape[1] if scale is None else [float(x) for x in scale]
    curve = np.zeros(lags.size)
    for i, k in enumerate(lags):
        shift = envelope_start + lead + k
        t0, t1 = max(0, -shift), min(n, m - shift)
        if t1 - t0 < 3:
            continue
        curve[i] = np.mean([M._ncc(pred[t0:t1, j], a[t0 + shift:t1 + shift, j], scales[j])
                            for j in range(a.shape[1])])
    best = int(np.argmax(curve))
    return M.SyncReading(offset=int(lags[best]), confidence=float(curve[best] - np.median(curve)),
                  peak=float(curve[best]), lags=lags, curve=curve)


def chance_confidence(probe: SyncProbe, landmarks: np.ndarray, envelope: np.ndarray, n: int,
                      trials: int = 48, quantile: float = 0.9, seed: int = 0) -> float:
    """Confidence that n frames of unrelated lips and speech reach by chance.

    Pairs n-frame windows of the speaker's frames with windows of their speech (read
    circularly) at least 60 frames (2 s) away, and returns the `quantile` of the
    confidence over `trials` pairs. A short window needs a clear margin over it.
    """
    m = min(len(landmarks), len(envelope))
    gap = 60
    if m < max(n, 2 * gap + 1):
        return float("nan")
    pred = probe.predict(np.asarray(landmarks)[:m])
    env = np.asarray(envelope)[:m]
    pad = MAX_LAG + abs(probe.lead)          # heard speech around the window, so every lag overlaps fully
    rng = np.random.default_rng(seed)
    conf = []
    for _ in range(trials):
        s = int(rng.integers(0, m - n + 1))
        e = s + int(rng.integers(gap, m - gap + 1))
        heard = env[(e - pad + np.arange(n + 2 * pad)) % m]
        conf.append(correlate(pred[s:s + n], heard, probe.lead, pad, probe.scale).confidence)
    return float(np.quantile(conf, quantile))
