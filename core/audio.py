"""Speech features: per-utterance normalised log-mel at 100 frames/s, and windows per video frame.

Every video frame gets a window of about +-200 ms centred on its timestamp (not
its index), so any frame rate works. The same function featurises the clip's own
speech and any new speech a user dubs with, so they match.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
HOP = 160            # 10 ms
N_FFT = 400          # 25 ms
N_MELS = 80
MEL_RATE = SAMPLE_RATE / HOP   # mel frames per second
WINDOW = 40          # mel frames per video-frame window: +-200 ms
SILENCE_DB = -80.0


def _hz_to_mel(f):
    # Slaney's scale, as librosa's default: linear below 1 kHz, logarithmic above.
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def mel_basis(fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """(80, N_FFT/2+1) Slaney-normalised triangular filters, equal to librosa.filters.mel.

    Written out because importing librosa's filters costs about 4 s per process,
    more than the whole prepare budget of a 20 s clip.
    """
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), N_MELS + 2))
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:N_MELS + 2] - edges[:N_MELS]))[:, None]
    return weights.astype(np.float32)


_MEL_BASIS = mel_basis()


def log_mel(wave: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """(T, 80) log-mel in dB (floor -80 dB), frame t centred at t * 10 ms.

    The STFT is numpy's, chunked so memory stays small for long audio: librosa's own
    spectrogram JIT-compiles on first use (seconds per process), and torch's would make
    prepare import torch.
    """
    wave = np.asarray(wave, np.float32)
    if wave.size < N_FFT:
        wave = np.pad(wave, (0, N_FFT - wave.size))
    padded = np.pad(wave, N_FFT // 2)                                     # centred frames, zero edges
    n = 1 + (padded.size - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]     # (T, N_FFT), a view
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)   # periodic Hann
    out = np.empty((n, N_MELS), np.float32)
    for i in range(0, n, chunk):
        spec = np.abs(np.fft.rfft(frames[i:i + chunk] * window, axis=1)) ** 2       # (t, F)
        out[i:i + chunk] = spec @ _MEL_BASIS.T
    db = 10.0 * np.log10(np.maximum(out, 1e-10))
    return np.maximum(db, SILENCE_DB).astype(np.float32)


def speech_features(wave: np.ndarray) -> np.ndarray:
    """(T, 80) log-mel normalised per utterance, so other speakers and microphones match the clip.

    Normalisation uses statistics of the voiced frames only; silence keeps a low,
    constant value instead of being stretched into noise.
    """
    db = log_mel(wave)
    energy = db.mean(axis=1)
    voiced = energy > max(energy.max() - 50.0, SILENCE_DB + 5.0)
    ref = db[voiced] if voiced.sum() >= 10 else None
    if ref is None:
        # Silent or near-silent audio: a fixed scale keeps it at rest, not amplified.
        return ((db - SILENCE_DB) / 20.0 - 2.0).astype(np.float32)
    mu, sd = ref.mean(axis=0), ref.std(axis=0) + 1e-3
    return ((db - mu) / sd).astype(np.float32)


def frame_times(n: int, fps: float, start: float = 0.0) -> np.ndarray:
    """Timestamps (s) of n video frames."""
    return start + np.arange(n, dtype=np.float64) / float(fps)


def mel_windows(mel: np.ndarray, times_s: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """(N, window, 80) windows of `mel` centred on each timestamp, edge-padded at both ends.

    Mel frame j is centred at j / MEL_RATE s, so the window for time t covers
    frames round(t * MEL_RATE) - window/2 ... + window/2 - 1.
    """
    times_s = np.asarray(times_s, np.float64)
    centre = np.round(times_s * MEL_RATE).astype(np.int64)
    idx = centre[:, None] + np.arange(window)[None, :] - window // 2      # (N, window)
    idx = np.clip(idx, 0, len(mel) - 1)
    return np.asarray(mel)[idx]


def speech_envelope(wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) log RMS energy of the speech around each frame timestamp."""
    db = log_mel(wave)
    energy = np.log(np.mean(10.0 ** (db / 10.0), axis=1) + 1e-10)
    t = np.clip(np.round(frame_times(n_frames, fps) * MEL_RATE).astype(int), 0, len(energy) - 1)
    return energy[t].astype(np.float32)
