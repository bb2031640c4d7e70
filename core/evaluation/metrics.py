"""Evaluation metrics: image quality, lip shape and audio-visual sync, in numpy and OpenCV.

Images are uint8 RGB arrays shaped (..., H, W, 3); per-image metrics return an array
shaped (...) so a batch gives one value per frame.

- psnr: capped at PSNR_CAP dB so identical images give a finite number.
- ssim: Wang et al. 2004 (Gaussian window 11, sigma 1.5), averaged over RGB channels.
- cpbd: no-reference sharpness, Narvekar & Karam, IEEE TIP 20(9) 2011 (see cpbd()).
- gradient_energy, laplacian_variance: high-frequency energy, for the generated inner mouth box.
- teeth_share: bright, unsaturated pixels inside the inner lips.
- lmd: mean distance of mouth landmarks over inter-ocular distance; lip_distance on MediaPipe's
  40 lip points or FAN's 20 (the paper's).
- av_offset: audio-visual offset by cross-correlating lip opening with the speech
  envelope, from landmarks and the raw waveform only; sync_probe builds the evaluation's
  sync estimator on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PSNR_CAP = 100.0


# --- image quality ----------------------------------------------------------------

def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per image, data range 255, capped at `cap`."""
    a, b = _pair(a, b)
    lead = a.shape[:-3]
    a = a.reshape(-1, *a.shape[-3:])
    b = b.reshape(-1, *b.shape[-3:])
    # One image at a time in float32: whole-batch float64 copies cost more than the arithmetic.
    mse = np.array([np.mean(np.square(x.astype(np.float32) - y.astype(np.float32)), dtype=np.float64)
                    for x, y in zip(a, b)])
    with np.errstate(divide="ignore"):
        val = 10.0 * np.log10(255.0 ** 2 / mse)
    return np.minimum(val, cap).reshape(lead)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity per image (mean SSIM map, averaged over channels)."""
    a, b = _pair(a, b)
    lead = a.shape[:-3]
    a = a.reshape(-1, *a.shape[-3:])
    b = b.reshape(-1, *b.shape[-3:])
    out = np.array([1.0 if np.array_equal(x, y) else _ssim_one(x.astype(np.float32), y.astype(np.float32))
                    for x, y in zip(a, b)], dtype=np.float64)
    return out.reshape(lead)


_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _ssim_one(x: np.ndarray, y: np.ndarray) -> float:
    blur = lambda im: cv2.GaussianBlur(im, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    return float((num / den).mean())


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"images must share a (..., H, W, C) shape, got {a.shape} and {b.shape}")
    return a, b


# --- CPBD ---------------------------------------------------------------------------
# Narvekar & Karam 2011. An edge of width w in a block of contrast C is detected as
# blurred with probability P = 1 - exp(-(w / w_JNB(C))^beta), w_JNB = 5 px for C <= 50
# and 3 px above ("just noticeable blur"), beta = 3.6. CPBD is the fraction of edge
# pixels, over 64 x 64 blocks with enough Canny edges, whose P is at most P_JNB = 63%.
# Widths follow Marziliano et al.: along the row, from an edge pixel to the local
# extrema on both sides, for edges whose gradient is near horizontal.

CPBD_BLOCK = 64
CPBD_EDGE_FRACTION = 0.002
CPBD_BETA = 3.6
CPBD_P_JNB = 0.63
_MAX_WIDTH_STEPS = 100
CANNY_LOW, CANNY_HIGH = 50, 100   # only selects edge blocks, so lenient


def cpbd(image: np.ndarray) -> float:
    """Sharpness in [0, 1] of one uint8 image (H, W[, 3]); higher is sharper.

    Returns 0.0
    when the image has no edge block (a flat image carries no sharp edges).
    """
    gray = _gray(image)
    h, w = gray.shape
    canny = cv2.Canny(gray.astype(np.uint8), CANNY_LOW, CANNY_HIGH) > 0
    widths = _edge_widths(gray)
    probs = []
    # Cover the whole image: a trailing partial block counts when at least half a block.
    for y in _block_starts(h):
        for x in _block_starts(w):
            block = (slice(y, y + CPBD_BLOCK), slice(x, x + CPBD_BLOCK))
            area = min(CPBD_BLOCK, h - y) * min(CPBD_BLOCK, w - x)
            if np.count_nonzero(canny[block]) <= area * CPBD_EDGE_FRACTION:
                continue
            bw_ = widths[block]
            bw_ = bw_[bw_ > 0]
            if bw_.size == 0:
                continue
            patch = gray[block]
            contrast = float(patch.max() - patch.min())
            w_jnb = 5.0 if contrast <= 50 else 3.0
            probs.append(1.0 - np.exp(-np.abs(bw_ / w_jnb) ** CPBD_BETA))
    if not probs:
        return 0.0
    p = np.concatenate(probs)
    # The reference histograms P in 1% bins and sums bins 0..63; rounding matches it.
    return float(np.mean(np.round(p * 100) <= round(CPBD_P_JNB * 100)))


def _block_starts(n: int) -> list[int]:
    starts = list(range(0, n, CPBD_BLOCK))
    if len(starts) > 1 and n - starts[-1] < CPBD_BLOCK // 2:
        starts.pop()
    return starts


def cpbd_batch(images: np.ndarray) -> np.ndarray:
    """cpbd() of each image in a (N, H, W, 3) batch."""
    return np.array([cpbd(im) for im in images], dtype=np.float64)


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return image.astype(np.float64)


def _edge_widths(gray: np.ndarray) -> np.ndarray:
    """Marziliano edge width at each Sobel edge pixel with a horizontal gradient, else 0."""
    gx = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)
    mag2 = gx * gx + gy * gy
    # MATLAB's edge(I, 'sobel') threshold, which the reference implementation uses.
    thresh = 4.0 * mag2.mean()
    edges = (mag2 > thresh) & _thin(mag2, gx, gy)
    angle = np.degrees(np.arctan2(gy, gx))
    q = 45.0 * np.round(angle / 45.0)
    rising = edges & (q == 0)               # intensity grows left to right
    falling = edges & (np.abs(q) == 180)    # intensity falls left to right

    # Runs of monotone steps, counted outward from each pixel, capped like the reference.
    d = np.diff(gray, axis=1)               # d[:, k] = I[k+1] - I[k]
    up_left = _run_left(d > 0)              # steps k-1 -> k rising, ending at k
    down_left = _run_left(d < 0)
    up_right = _run_right(d > 0)            # steps k -> k+1 rising, starting at k
    down_right = _run_right(d < 0)
    h, w = gray.shape
    out = np.zeros((h, w))
    cols = np.arange(1, w - 1)
    # Rising edge at c: going left from c-1 intensity keeps falling; going right from c+1 it keeps rising.
    left_r = np.minimum(up_left[:, cols - 1], _MAX_WIDTH_STEPS) + 1
    right_r = np.minimum(up_right[:, cols + 1], _MAX_WIDTH_STEPS) + 1
    left_f = np.minimum(down_left[:, cols - 1], _MAX_WIDTH_STEPS) + 1
    right_f = np.minimum(down_right[:, cols + 1], _MAX_WIDTH_STEPS) + 1
    inner = (slice(None), slice(1, w - 1))
    out[inner] = np.where(rising[inner], left_r + right_r, 0.0)
    out[inner] = np.where(falling[inner], left_f + right_f, out[inner])
    out[[0, -1], :] = 0.0
    return out


def _run_left(step: np.ndarray) -> np.ndarray:
    """(H, W): for pixel k, how many consecutive steps (j-1 -> j), j <= k, satisfy `step`."""
    h, w1 = step.shape
    run = np.zeros((h, w1 + 1), dtype=np.int64)
    for k in range(1, w1 + 1):
        run[:, k] = np.where(step[:, k - 1], run[:, k - 1] + 1, 0)
    return run


def _run_right(step: np.ndarray) -> np.ndarray:
    """(H, W): for pixel k, how many consecutive steps (j -> j+1), j >= k, satisfy `step`."""
    h, w1 = step.shape
    run = np.zeros((h, w1 + 1), dtype=np.int64)
    for k in range(w1 - 1, -1, -1):
        run[:, k] = np.where(step[:, k], run[:, k + 1] + 1, 0)
    return run


def _thin(mag2: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep horizontal/vertical local maxima of the gradient, as MATLAB's Sobel edge does."""
    left = np.roll(mag2, 1, axis=1)
    right = np.roll(mag2, -1, axis=1)
    up = np.roll(mag2, 1, axis=0)
    down = np.roll(mag2, -1, axis=0)
    horiz = (np.abs(gx) >= np.abs(gy)) & (mag2 >= left) & (mag2 > right)
    vert = (np.abs(gy) > np.abs(gx)) & (mag2 >= up) & (mag2 > down)
    return horiz | vert


# --- detail inside the generated mouth ------------------------------------------------
# The paste feathers the generated mouth into the real frame over its outer border, so
# sharpness measured on the whole mouth box is mostly that of real pixels. These look at
# the inner box only, where every pixel is generated.

def inner_box(image: np.ndarray, margin: int) -> np.ndarray:
    """(..., H, W, C) -> (..., H - 2 margin, W - 2 margin, C): the box without its feathered border."""
    if margin <= 0:
        return image
    return image[..., margin:image.shape[-3] - margin, margin:image.shape[-2] - margin, :]


def _masked_means(maps: list[np.ndarray], masks) -> np.ndarray:
    if masks is None:
        return np.array([float(m[1:-1, 1:-1].mean()) for m in maps])
    out = []
    for m, k in zip(maps, masks):
        # One pixel in: the filters read their neighbours, which must be inside too.
        k = cv2.erode(np.asarray(k, np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        out.append(float(m[k].mean()) if k.any() else float("nan"))
    return np.array(out)


def gradient_energy(images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Mean Sobel gradient magnitude (grey levels per px) of each uint8 image (N, H, W, 3),
    over the pixels of masks (N, H, W) when given."""
    maps = []
    for im in np.asarray(images):
        g = _gray(im)
        gx = cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3) / 8.0
        gy = cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3) / 8.0
        maps.append(np.sqrt(gx * gx + gy * gy))
    return _masked_means(maps, masks)


def laplacian_variance(images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
    """Variance of the Laplacian of each uint8 image (N, H, W, 3), the classic focus measure;
    over the pixels of masks (N, H, W) when given."""
    maps = []
    for im in np.asarray(images):
        lap = cv2.Laplacian(_gray(im), cv2.CV_64F)
        maps.append(lap)
    means = _masked_means(maps, masks)
    squares = _masked_means([m * m for m in maps], masks)
    return squares - means * means


def teeth_share(image: np.ndarray, inner_lip: np.ndarray, bright: float = 150.0,
                max_saturation: float = 0.35) -> float:
    """Share of the pixels inside the inner-lip polygon that are bright and unsaturated (teeth).

    image (H, W, 3) uint8 RGB; inner_lip (P, 2) pixel polygon. NaN when the polygon is
    degenerate (a closed mouth has no inside to measure).
    """
    pts = np.asarray(inner_lip, np.float64)[:, :2]
    if not np.isfinite(pts).all():
        return float("nan")
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    inside = mask.astype(bool)
    if inside.sum() < 4:
        return float("nan")
    hsv = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2HSV)
    px = hsv[inside]
    teeth = (px[:, 2] >= bright) & (px[:, 1] <= max_saturation * 255)
    return float(teeth.mean())


# --- lip shape ----------------------------------------------------------------------

def lmd(landmarks: np.ndarray, reference: np.ndarray, points: list[int] | np.ndarray,
        inter_ocular: np.ndarray) -> np.ndarray:
    """Per-frame mean distance of `points` between two landmark tracks, over inter-ocular distance.

    landmarks, reference: (N, P, 2+) pixels; inter_ocular: (N,) pixels of the reference.
    Frames where either track has no face come out NaN.
    """
    idx = np.asarray(points)
    a = np.asarray(landmarks, dtype=np.float64)[:, idx, :2]
    b = np.asarray(reference, dtype=np.float64)[:, idx, :2]
    dist = np.linalg.norm(a - b, axis=-1).mean(-1)                       # (N,)
    iod = np.asarray(inter_ocular, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(iod > 0, dist / iod, np.nan)


LMD_SETS = {"facemesh40": "40 MediaPipe lip landmarks over real inter-ocular distance",
            "fan68": "20 FAN lip landmarks (48-67 of the 68-point layout) over real inter-ocular distance"}


def lip_distance(landmarks: np.ndarray, reference: np.ndarray, points: str = "facemesh40") -> np.ndarray:
    """(N,) lmd of a landmark set of LMD_SETS, over the reference's outer-eye-corner distance.

    "facemesh40": (N, 478, 3+) tracks, faces.LIPS; "fan68": (N, 68, 3) FAN tracks, its lips 48-67.
    """
    if points == "fan68":
        from ..prepare.tracking.fan import FAN_LIPS as lips
        from ..prepare.tracking.fan import inter_ocular
    elif points == "facemesh40":
        from ..prepare.faces import LIPS as lips
        from ..prepare.faces import inter_ocular
    else:
        raise ValueError(f"unknown LMD landmark set {points!r}")
    return lmd(landmarks, reference, lips, inter_ocular(np.asarray(reference, np.float64)))


# --- audio-visual sync --------------------------------------------------------------
# Tuned on the three real clips in shared/media: sliding 60-frame windows agree with
# the whole clip within 1 frame in 78-96% of cases, 120-frame windows in 98-100%.
# The outer-lip gap beats the inner one (which sits at 0 whenever the lips touch),
# and three speech bands beat one (voicing and frication peak at different times).

MAX_LAG = 15
SPEECH_BANDS = ((80.0, 500.0), (500.0, 2000.0), (2000.0, 6000.0))
SMOOTH_SIGMA = 0.7            # frames; light smoothing before differencing
LIP_TOP, LIP_BOTTOM = 0, 17   # MediaPipe outer-lip midpoints
EYE_LEFT, EYE_RIGHT = 33, 263  # MediaPipe outer eye corners


@dataclass
class SyncReading:
    """Result of av_offset.

    offset: lag in frames at the correlation peak; positive means the lips move
    before the sound (video leads audio). confidence: peak correlation minus the
    median over all lags, as SyncNet reports it; near 0 means no sync signal.
    curve: mean correlation per lag in `lags`.
    """

    offset: int
    confidence: float
    peak: float
    lags: np.ndarray
    curve: np.ndarray


def lip_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N,) outer-lip gap over inter-ocular distance from (N, 478, 2+) MediaPipe landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    iod = np.linalg.norm(lm[:, EYE_LEFT, :2] - lm[:, EYE_RIGHT, :2], axis=-1)
    gap = np.linalg.norm(lm[:, LIP_TOP, :2] - lm[:, LIP_BOTTOM, :2], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(iod > 0, gap / iod, np.nan)


def speech_envelope(wave: np.ndarray, sample_rate: int, times: np.ndarray,
                    window_s: float | None = None,
                    bands: tuple[tuple[float, float], ...] = SPEECH_BANDS) -> np.ndarray:
    """Log energy (dB) of each speech band in a window centred on each time.

    wave: mono float waveform; times: (N,) seconds; window defaults to one frame step.
    returns (N, len(bands)); times outside the audio get the band's floor.
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    times = np.asarray(times, dtype=np.float64)
    if window_s is None:
        window_s = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / 30
    half = window_s * sample_rate / 2
    i0 = np.clip(np.round(times * sample_rate - half).astype(np.int64), 0, wave.size)
    i1 = np.clip(np.round(times * sample_rate + half).astype(np.int64), 0, wave.size)
    n = np.maximum(i1 - i0, 1)
    out = np.empty((times.size, len(bands)))
    spec, nfft = _spectrum(wave)
    for j, (lo, hi) in enumerate(bands):
        band = _bandpass(spec, nfft, wave.size, sample_rate, lo, hi)
        power = band * band
        cs = np.concatenate([[0.0], np.cumsum(power)])
        floor = max(float(power.mean()) * 1e-4, 1e-12) if power.size else 1e-12
        out[:, j] = 10.0 * np.log10((cs[i1] - cs[i0]) / n + floor)
    return out


def _spectrum(wave: np.ndarray) -> tuple[np.ndarray, int]:
    n = 1 << int(np.ceil(np.log2(max(wave.size, 2))))    # a power of two: FFTs of odd lengths are slow
    return np.fft.rfft(wave, n=n), n


def _bandpass(spec: np.ndarray, nfft: int, size: int, sr: int, lo: float, hi: float) -> np.ndarray:
    f = np.fft.rfftfreq(nfft, 1.0 / sr)
    return np.fft.irfft(np.where((f < lo) | (f > hi), 0, spec), n=nfft)[:size]


def _motion(x: np.ndarray) -> np.ndarray:
    """First difference of a lightly smoothed series, along axis 0."""
    x = _fill_nan(np.asarray(x, dtype=np.float64))
    if SMOOTH_SIGMA > 0 and x.shape[0] > 1:
        x = _gauss1d(x, SMOOTH_SIGMA)
    return np.diff(x, axis=0, prepend=x[:1])


def av_offset(opening: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG,
              envelope_start: int = 0) -> SyncReading:
    """Offset between lip motion and speech energy, by normalised cross-correlation.

    opening: (N,) lip_opening of N consecutive video frames.
    envelope: (M, B) or (M,) speech_envelope at frame times; row envelope_start
    belongs to video frame 0, so audio around a short video can widen the overlap.
    The correlation at lag k pairs video frame t with audio at frame t + k; the
    curve is the mean over bands. On a speaker's real frames the offset is their
    articulation lead, which sync_probe.fit_probe calibrates against.
    """
    v = _motion(opening)
    env = np.asarray(envelope, dtype=np.float64)
    env = env[:, None] if env.ndim == 1 else env
    a = _motion(env)                                                    # (M, B)
    n, m = v.size, a.shape[0]
    max_lag = int(min(max_lag, max(n // 3, 1)))
    lags = np.arange(-max_lag, max_lag + 1)
    curve = np.zeros(lags.size)
    for i, k in enumerate(lags):
        t0 = max(0, -k - envelope_start)
        t1 = min(n, m - k - envelope_start)
        if t1 - t0 < 3:
            continue
        seg = a[t0 + k + envelope_start: t1 + k + envelope_start]
        curve[i] = np.mean([_ncc(v[t0:t1], seg[:, j]) for j in range(a.shape[1])])
    best = int(np.argmax(curve))
    peak = float(curve[best])
    conf = peak - float(np.median(curve))
    return SyncReading(offset=int(lags[best]), confidence=conf, peak=peak, lags=lags, curve=curve)


def _ncc(x: np.ndarray, y: np.ndarray, x_scale: float | None = None) -> float:
    """Pearson correlation of two equal-length series; x_scale replaces x's own std."""
    x = x - x.mean()
    y = y - y.mean()
    sx = np.sqrt((x * x).sum()) if x_scale is None else x_scale * np.sqrt(x.size)
    den = sx * np.sqrt((y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def _gauss1d(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, [(r, r)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    cols = pad.reshape(pad.shape[0], -1)
    out = np.stack([np.convolve(c, k, mode="valid") for c in cols.T], axis=1)
    return out.reshape(x.shape)


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Fill non-finite values along axis 0 by linear interpolation, per column."""
    if np.isfinite(x).all():
        return x
    flat = x.reshape(x.shape[0], -1).copy()
    idx = np.arange(flat.shape[0])
    for c in range(flat.shape[1]):
        bad = ~np.isfinite(flat[:, c])
        if bad.all():
            flat[:, c] = 0.0
        elif bad.any():
            flat[bad, c] = np.interp(idx[bad], idx[~bad], flat[~bad, c])
    return flat.reshape(x.shape)
