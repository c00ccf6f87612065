"""FMI — feature mutual information (Haghighat, Aghagolzadeh & Seyedarabi, Comput. Electr. Eng.
37(5), 2011), in the "fast FMI" form of Haghighat & Razian (AICT 2014) used by the toolbox's
``analysis_fmi.m``. ↑, range 0..1.

Features (:func:`feature_map`): ``none`` (raw pixels), ``edge`` (binary MATLAB ``edge(I)`` Sobel map),
``dct`` (whole-image orthonormal 2-D DCT-II, MATLAB ``dct2``), ``gradient`` (MATLAB ``gradient``'s
x-derivative). For every fully inside 3×3 window the per-window FMI of (A, F) and (B, F) is computed
and ``mean((fmi_AF + fmi_BF)/2)`` is returned. Per window and pair (X, F):

1. X window equal to the current F window → 1.
2. Otherwise min–max normalise both (a constant window becomes all ones); the normalised F window
   **replaces** F's window for the B branch (quirk of the toolbox, reproduced).
3. PDFs = column-major window / window sum, CDFs by cumulative sums; c = Pearson(p, q);
   population sd of each PDF with positions 1..9 as the variable.
4. Joint PDF = φ·U + (1−φ)·p⊗q with U the cell measure of the Fréchet upper bound
   ``min(CDF_F, CDF_X)`` (c ≥ 0, φ = c/corr_up) or lower bound ``max(CDF_F + CDF_X − 1, 0)``
   (c < 0, θ = c/corr_lo); φ = 0 if c = 0 or an sd is 0.
5. MI = H(p) + H(q) − H(joint) with ``−x·log2|x|`` over non-zero cells; fmi = 2·MI/(H(p)+H(q)),
   0 when MI is exactly 0.

Sums over the nine window entries are sequential (Octave's ``sum``, the reference the values were
checked against). This matters for the exact-zero tests: for two uniform windows the sequential
mean of nine 1/9 is not exactly 1/9, so c = 1 (not 0) and that window scores 1, as in Octave.

Speed: the windows are evaluated in a compiled (numba) loop, parallel over rows. The Fréchet bounds
put mass on at most 17 "staircase" cells (the merge of the two CDFs); all other cells hold
(1−φ)p_i q_j, whose entropy sum has a closed form from the marginal entropies. The fused window's
marginals are shared by the A and B branches. So a window pair needs about 25–35 logarithms instead
of 81+ per branch, with the same values up to rounding (≈1e-15).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import scipy.fft

from pipeline.metrics.filters import correlate3, matlab_gradient
from pipeline.metrics.inputs import Triple

FEATURES = ("none", "edge", "dct", "gradient")


def matlab_edge(image: np.ndarray) -> np.ndarray:
    """MATLAB ``edge(I)`` with its defaults (Sobel, automatic threshold, thinning) as a 0/1 float map.

    ``bx``/``by``: correlation with [1 0 −1; 2 0 −2; 1 0 −1]/8 and its transpose, replicate borders;
    ``b = bx² + by²``; edge where ``b > 4·mean(b)`` and b is a horizontal local maximum where
    ``|bx| ≥ |by|`` or a vertical one where ``|by| ≥ |bx|`` (tolerance 100·eps; left/upper neighbour
    ``≤ b``, right/lower ``< b``; tests outside the image count as satisfied). Not Octave's ``edge``.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64) / 8
    bx = correlate3(image, kernel, "replicate")
    by = correlate3(image, kernel.T, "replicate")
    b = bx * bx + by * by
    cutoff = 4 * np.sum(b) / b.size
    tol = 100 * np.finfo(np.float64).eps
    left = np.ones_like(b, dtype=bool)
    right = np.ones_like(b, dtype=bool)
    up = np.ones_like(b, dtype=bool)
    down = np.ones_like(b, dtype=bool)
    left[:, 1:] = b[:, :-1] <= b[:, 1:]
    right[:, :-1] = b[:, :-1] > b[:, 1:]
    up[1:, :] = b[:-1, :] <= b[1:, :]
    down[:-1, :] = b[:-1, :] > b[1:, :]
    horizontal = (np.abs(bx) >= np.abs(by) - tol) & left & right
    vertical = (np.abs(by) >= np.abs(bx) - tol) & up & down
    return ((b > cutoff) & (horizontal | vertical)).astype(np.float64)


def feature_map(image: np.ndarray, feature: str) -> np.ndarray:
    """The feature image FMI works on (see module docstring), float64."""
    image = np.asarray(image, dtype=np.float64)
    if feature == "none":
        return image
    if feature == "edge":
        return matlab_edge(image)
    if feature == "dct":
        return scipy.fft.dctn(image, type=2, norm="ortho")
    if feature == "gradient":
        return matlab_gradient(image)[0]
    raise ValueError(f"unknown FMI feature {feature!r}; choose one of {FEATURES}")


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _normalise(window, out):
    lo = window[0]
    hi = window[0]
    for k in range(1, 9):
        lo = min(lo, window[k])
        hi = max(hi, window[k])
    for k in range(9):
        out[k] = 1.0 if hi == lo else (window[k] - lo) / (hi - lo)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _marginals(w, pdf, cdf, logs):
    """Fill PDF (window / MATLAB-ordered ``sum(sum(.))``), CDF and log2(PDF); return (entropy, sd)
    where sd is the population sd of the PDF with positions 1..9 as the variable."""
    total = ((w[0] + w[1]) + w[2] + ((w[3] + w[4]) + w[5])) + ((w[6] + w[7]) + w[8])
    running = 0.0
    entropy = 0.0
    e1 = 0.0
    e2 = 0.0
    for k in range(9):
        pdf[k] = w[k] / total
        running = pdf[k] if k == 0 else running + pdf[k]
        cdf[k] = running
        if pdf[k] != 0:
            logs[k] = math.log2(pdf[k])
            entropy += -pdf[k] * logs[k]
        else:
            logs[k] = 0.0
        e1 += (k + 1) * pdf[k]
        e2 += (k + 1) * (k + 1) * pdf[k]
    var = e2 - e1 * e1
    return entropy, math.sqrt(var) if var > 0 else 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fmi_core(buf, hx, sdx, hf, sdf, cells_i, cells_j, cells_u):
    """FMI of one pair of normalised windows whose marginals (:func:`_marginals`) are in ``buf``:
    rows 0-2 = source PDF/CDF/log2 PDF, rows 3-5 = fused; row 6 is work space.
    ``cells_*`` hold the staircase cells (≤ 18)."""
    p, cp, lp, q, cq, lq, walk = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6]
    mean_p = p[0]
    mean_q = q[0]
    for k in range(1, 9):
        mean_p += p[k]
        mean_q += q[k]
    mean_p /= 9.0
    mean_q /= 9.0
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for k in range(9):
        dp = p[k] - mean_p
        dq = q[k] - mean_q
        sxy += dp * dq
        sxx += dp * dp
        syy += dq * dq
    c = 0.0 if sxy == 0 else sxy / math.sqrt(sxx * syy)
    lower = c < 0
    # F (rows i) is walked against the source CDF (columns j); for the lower Fréchet bound the
    # source is walked in reverse order, so walk-cell m is source cell 8 - m.
    if lower:
        acc = 0.0
        for m in range(9):
            acc = p[8] if m == 0 else acc + p[8 - m]
            walk[m] = acc
    else:
        for m in range(9):
            walk[m] = cp[m]
    sum_cf = 0.0
    sum_cx = 0.0
    for k in range(9):
        sum_cf += cq[k]
        sum_cx += cp[k]
    i = 0
    m = 0
    prev = 0.0
    weighted = 0.0  # Σ_ij bound-CDF(i, j) = Σ_cells u·(9 − i)(9 − j)
    n_cells = 0
    while i < 9 and m < 9:
        ci = i
        cm = m
        if cq[i] <= walk[m]:
            t = cq[i]
            i += 1
        else:
            t = walk[m]
            m += 1
        seg = t - prev
        prev = t
        if seg > 0:
            j = 8 - cm if lower else cm
            cells_i[n_cells] = ci
            cells_j[n_cells] = j
            cells_u[n_cells] = seg
            n_cells += 1
            weighted += seg * (9 - ci) * (9 - j)
    phi = 0.0
    if sdx != 0 and sdf != 0 and c != 0:
        cov = weighted - sum_cf * sum_cx
        phi = c / (cov / (sdf * sdx))
    # entropy of the rank-1 part (1−φ)·q_i·p_j over all cells, then correct the staircase cells
    one_minus = 1.0 - phi
    joint = 0.0
    log_om = 0.0
    if one_minus != 0:
        sum_p = 0.0
        sum_q = 0.0
        for k in range(9):
            sum_p += p[k]
            sum_q += q[k]
        log_om = math.log2(abs(one_minus))
        joint = -one_minus * (log_om * sum_q * sum_p - sum_p * hf - sum_q * hx)
    for n in range(n_cells):
        ii = cells_i[n]
        jj = cells_j[n]
        k_val = one_minus * q[ii] * p[jj]
        f_k = 0.0
        if k_val != 0:
            f_k = -k_val * (log_om + lq[ii] + lp[jj])
        val = phi * cells_u[n] + k_val
        f_j = 0.0
        if val != 0:
            f_j = -val * math.log2(abs(val))
        joint += f_j - f_k
    mi = hx + hf - joint
    if mi == 0 or hx + hf == 0:
        return 0.0
    return 2.0 * mi / (hx + hf)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _equal(x, y):
    for k in range(9):
        if x[k] != y[k]:
            return False
    return True


def _fmi_rows_impl(fa, fb, ff):
    """Per output row: sum over windows of (fmi_AF + fmi_BF)/2."""
    h, w = fa.shape
    rows = np.zeros(h - 2)
    for r in numba.prange(h - 2):  # prange is a plain range in the serial build
        aw = np.empty(9)
        bw = np.empty(9)
        fw = np.empty(9)
        xn = np.empty(9)
        fn = np.empty(9)
        buf = np.empty((7, 9))
        cells_i = np.empty(18, dtype=np.int64)
        cells_j = np.empty(18, dtype=np.int64)
        cells_u = np.empty(18)
        total = 0.0
        for col in range(w - 2):
            for dc in range(3):
                for dr in range(3):
                    k = dc * 3 + dr  # MATLAB column-major order inside the window
                    aw[k] = fa[r + dr, col + dc]
                    bw[k] = fb[r + dr, col + dc]
                    fw[k] = ff[r + dr, col + dc]
            fused_ready = False  # F's normalised marginals are in buf[3:6] (reused by the B branch)
            if _equal(aw, fw):
                fmi_af = 1.0
            else:
                _normalise(aw, xn)
                _normalise(fw, fn)
                hx, sdx = _marginals(xn, buf[0], buf[1], buf[2])
                hf, sdf = _marginals(fn, buf[3], buf[4], buf[5])
                fmi_af = _fmi_core(buf, hx, sdx, hf, sdf, cells_i, cells_j, cells_u)
                for k in range(9):
                    fw[k] = fn[k]  # the toolbox overwrites F's window with its normalised version
                fused_ready = True
            if _equal(bw, fw):
                fmi_bf = 1.0
            else:
                # normalising the already normalised F window again changes nothing (exactly)
                if not fused_ready:
                    _normalise(fw, fn)
                    hf, sdf = _marginals(fn, buf[3], buf[4], buf[5])
                _normalise(bw, xn)
                hx, sdx = _marginals(xn, buf[0], buf[1], buf[2])
                fmi_bf = _fmi_core(buf, hx, sdx, hf, sdf, cells_i, cells_j, cells_u)
            total += (fmi_af + fmi_bf) / 2.0
        rows[r] = total
    return rows


# rows in parallel threads (one call at a time), or serially (safe to call from many threads at once)
_fmi_rows_parallel = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")(_fmi_rows_impl)
_fmi_rows_serial = numba.njit(cache=True, nogil=True, error_model="numpy")(_fmi_rows_impl)


def fmi_value(a: np.ndarray, b: np.ndarray, f: np.ndarray, feature: str = "edge", parallel: bool = True) -> float:
    """``analysis_fmi(a, b, f, feature, 3)``: mean per-window FMI over all 3×3 windows.

    ``parallel``: spread rows over numba's threads (for one image at a time); ``False`` when the
    caller already runs images in parallel threads. Images under 3×3 (no window) give NaN."""
    if min(np.shape(f)) < 3:
        return math.nan
    fa, fb, ff = (np.ascontiguousarray(feature_map(x, feature)) for x in (a, b, f))
    rows = (_fmi_rows_parallel if parallel else _fmi_rows_serial)(fa, fb, ff)
    return float(np.sum(rows) / ((fa.shape[0] - 2) * (fa.shape[1] - 2)))


def fmi_pixel(t: Triple) -> float:
    """FMI_pixel ↑ as the toolbox reports it: ``analysis_fmi(A, B, F)`` without a feature argument,
    whose default is ``'edge'`` — i.e. the edge-feature FMI (not raw pixels)."""
    return fmi_value(t.a, t.b, t.f, "edge", t.parallel)


def fmi_pixel_none(t: Triple) -> float:
    """FMI_pixel_none ↑ — the true pixel FMI, ``analysis_fmi(A, B, F, 'none')``."""
    return fmi_value(t.a, t.b, t.f, "none", t.parallel)


def fmi_dct(t: Triple) -> float:
    """FMI_dct ↑ — ``analysis_fmi(A, B, F, 'dct')`` on whole-image orthonormal DCT coefficients."""
    return fmi_value(t.a, t.b, t.f, "dct", t.parallel)
