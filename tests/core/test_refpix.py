"""Tests of the Roman reference-pixel correction kernel (ALGORITHMS.md §4)."""

from __future__ import annotations

import numpy as np
import pytest

from rampcal.core import refpix
from rampcal.core.dq import PixelFlag
from rampcal.core.refpix import correct_refpix, default_refpix_coefficients

PAD = 12


# --------------------------------------------------------------------------- helpers


def _read_order_to_detector(ro: np.ndarray) -> np.ndarray:
    """(..., 32, ny, w) read-order channel blocks -> (..., ny, 32*w) detector columns."""
    ro = ro.copy()
    ro[..., 1::2, :, :] = ro[..., 1::2, :, ::-1]
    *lead, nc, ny, w = ro.shape
    return np.moveaxis(ro, -3, -2).reshape(*lead, ny, nc * w)


def _scene(rng, nf, ny, nx, *, drift=True, common=True, signal=True, bias=True):
    """Synthetic frames with known parts.

    Returns (data, amp33, truth, slopes) where ``truth`` = bias + ramp signal (what a
    perfect correction keeps, up to a per-pixel constant) and ``slopes`` the ramp
    slope per pixel (DN/frame).
    """
    w = nx // 32
    period = w + PAD
    length = ny * period
    tau = (np.arange(length) - (length - 1) / 2).reshape(ny, period)[:, :w]
    ro = np.zeros((nf, 33, ny, w))  # read-order, 33 channels (32 = amp33)
    if drift:
        off = rng.normal(0.0, 20.0, (nf, 33))
        slo = rng.normal(0.0, 20.0 / length, (nf, 33))
        ro += off[:, :, None, None] + slo[:, :, None, None] * tau
    if common:
        cm = rng.normal(0.0, 3.0, (nf, length)).reshape(nf, ny, period)[:, :, :w]
        ro += cm[:, None]
    det = _read_order_to_detector(ro[:, :32])
    amp = ro[:, 32].copy()
    truth = np.zeros((nf, ny, nx))
    slopes = np.zeros((ny, nx))
    if bias:
        truth += rng.normal(1000.0, 30.0, (ny, nx))
        amp += rng.normal(1000.0, 30.0, (ny, w))
    if signal:
        slopes[4:-4, 4:-4] = rng.uniform(5.0, 50.0, (ny - 8, nx - 8))
        truth += slopes * np.arange(nf)[:, None, None]
    data = (det + truth).astype(np.float32)
    return data, amp.astype(np.float32), truth, slopes


def _drift_rms(frames: np.ndarray, truth: np.ndarray) -> float:
    """RMS over science pixels of (frames - truth) after removing each pixel's frame mean."""
    e = (frames.astype(np.float64) - truth)[:, 4:-4, 4:-4]
    e -= e.mean(axis=0)
    return float(np.sqrt(np.mean(e**2)))


def _fit_slopes(frames: np.ndarray) -> np.ndarray:
    nf = frames.shape[0]
    u = np.arange(nf) - (nf - 1) / 2
    return np.tensordot(u, frames.astype(np.float64), axes=(0, 0)) / np.sum(u * u)


def _random_coefficients(rng, ny, w):
    nk = ny * (w + PAD) // 2 + 1
    k = np.arange(nk) / nk

    def one():
        amp = rng.normal(1.0, 0.3, (32, 1)) * np.exp(-k * rng.uniform(0.5, 3.0, (32, 1)))
        phase = rng.uniform(-1.0, 1.0, (32, 1)) * k + rng.normal(0.0, 0.05, (32, nk))
        return amp * np.exp(1j * phase)

    return one(), one() * 0.3, one()


def _reference_refpix(
    data, amp33, pixeldq, gamma, zeta, alpha, *, remove_offset, remove_trends, cosine, fft
):
    """Literal numpy transcription of ALGORITHMS.md §4 (float64), for comparison."""
    data = data.astype(np.float64)
    nf, ny, nx = data.shape
    w = nx // 32
    period = w + PAD
    length = ny * period
    if pixeldq is not None:
        data[:, (pixeldq & PixelFlag.BAD_REF_PIXEL) != 0] = 0.0
    x = np.concatenate([data, amp33.astype(np.float64)], axis=2)  # step 1
    offset = 0.0
    if remove_offset:  # step 2 (intercept of the centred line = mean over frames)
        offset = x.mean(axis=0)
        x = x - offset
    y = x.reshape(nf, ny, 33, w).transpose(2, 0, 1, 3).copy()  # step 3
    y[1:32:2] = y[1:32:2, :, :, ::-1]
    y = np.pad(y, ((0, 0), (0, 0), (0, 0), (0, PAD)))
    t = np.arange(length, dtype=np.float64).reshape(ny, period)
    t -= t.mean()
    ref_rows = [0, 1, 2, 3, ny - 4, ny - 3, ny - 2, ny - 1]
    if remove_trends:  # step 4
        for c in range(33):
            for f in range(nf):
                mask = y[c, f, ref_rows] != 0
                if mask.any():
                    m, b = np.polyfit(t[ref_rows][mask], y[c, f, ref_rows][mask], 1)
                    y[c, f] -= (t * m + b) * (y[c, f] != 0)
    if cosine:  # step 5
        kern = np.sin(np.arange(1, 33) * np.pi / 32)
        for f in range(nf):
            s = y[32, f].reshape(length)
            msk = (s != 0).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                fill = np.convolve(s, kern, "same") / np.convolve(msk, kern, "same")
            y[32, f] = np.nan_to_num(s + fill * (1 - msk)).reshape(ny, period)
    if fft:  # step 6
        apod = (1 + np.cos(2 * np.pi * np.arange(length // 2 + 1) / length)) / 2
        pad = np.zeros((ny, period), bool)
        pad[:, w:] = True
        pad = pad.reshape(length)
        for f in range(nf):
            s = y[32, f].reshape(length).copy()
            for _ in range(3):
                s[pad] = np.fft.irfft(apod * np.fft.rfft(s), n=length)[pad]
            y[32, f] = s.reshape(ny, period)
    if gamma is not None:  # step 7
        norm = 2 * gamma.shape[1]
        for f in range(nf):
            left = np.zeros((ny, period))
            left[:, :4] = y[0, f, :, :4]
            right = np.zeros((ny, period))
            right[:, :4] = y[31, f, :, :4]
            lf = period / 4 * np.fft.rfft(left.reshape(length) / length)
            rf = period / 4 * np.fft.rfft(right.reshape(length) / length)
            af = np.fft.rfft(y[32, f].reshape(length) / length)
            for c in range(32):
                spec = (gamma[c] * lf + zeta[c] * rf + alpha[c] * af) * norm
                y[c, f] -= np.fft.irfft(spec, n=length).reshape(ny, period)
    y = y[..., :w].copy()  # step 8
    y[1:32:2] = y[1:32:2, :, :, ::-1]
    out = y.transpose(1, 2, 0, 3).reshape(nf, ny, 33 * w) + offset
    return out[:, :, :nx], out[:, :, nx:]


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"remove_offset": False},
        {"remove_trends": False},
        {"cosine_interpolate": False},
        {"fft_interpolate": False},
    ],
    ids=["all", "no_offset", "no_trends", "no_cosine", "no_fft"],
)
def test_matches_literal_reference_general_path(switches):
    rng = np.random.default_rng(1)
    nf, ny, nx = 4, 16, 256
    w = nx // 32
    # no ~1000 DN bias here, so that float32 rounding of the output stays << 1e-4 DN
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    data += rng.normal(0.0, 2.0, data.shape).astype(np.float32)
    amp += rng.normal(0.0, 2.0, amp.shape).astype(np.float32)
    amp[:, 5, 3] = 0.0  # missing amp33 samples (all frames), refilled by step 5
    amp[:, 9, 0:3] = 0.0
    dq = np.zeros((ny, nx), np.uint32)
    dq[1, 2] = dq[10, nx - 2] = dq[0, 40] = PixelFlag.BAD_REF_PIXEL | PixelFlag.REFERENCE_PIXEL
    gamma, zeta, alpha = _random_coefficients(rng, ny, w)
    opts = {
        "remove_offset": True,
        "remove_trends": True,
        "cosine_interpolate": True,
        "fft_interpolate": True,
        **switches,
    }
    exp_d, exp_a = _reference_refpix(
        data,
        amp,
        dq,
        gamma,
        zeta,
        alpha,
        remove_offset=opts["remove_offset"],
        remove_trends=opts["remove_trends"],
        cosine=opts["cosine_interpolate"],
        fft=opts["fft_interpolate"],
    )
    out = data.copy()
    res = correct_refpix(out, amp, dq, gamma, zeta, alpha, **opts)
    assert not res.fast_path
    assert res.n_bad_ref_pixels == 3
    assert out.dtype == np.float32
    # the frequency correction is large here (random coefficients): make sure it matters
    assert np.max(np.abs(exp_d - data)) > 10.0
    np.testing.assert_allclose(out, exp_d, rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.amp33, exp_a, rtol=0, atol=1e-4)


def test_frame_batches_and_odd_series_length(monkeypatch):
    # odd L = 17 * (9 + 12) = 357 and frames processed in batches of 2
    monkeypatch.setattr(refpix, "_FRAME_CHUNK", 2)
    rng = np.random.default_rng(16)
    nf, ny, nx = 5, 17, 32 * 9
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    # (float amp33: integer samples with an odd F would hit the reference's exact-zero
    # residual rule, see test_integer_amp33_and_exact_zero_residuals)
    amp_before = amp.copy()
    g, z, a = _random_coefficients(rng, ny, nx // 32)
    assert g.shape == (32, 357 // 2 + 1)
    exp_d, exp_a = _reference_refpix(
        data, amp, None, g, z, a, remove_offset=True, remove_trends=True, cosine=True, fft=True
    )
    out = data.copy()
    res = correct_refpix(out, amp, None, g, z, a)
    np.testing.assert_array_equal(amp, amp_before)  # input amp33 untouched
    np.testing.assert_allclose(out, exp_d, rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.amp33, exp_a, rtol=0, atol=1e-4)


def test_fast_path_equals_general_path(monkeypatch):
    rng = np.random.default_rng(2)
    nf, ny, nx = 3, 32, 256
    w = nx // 32
    nk = ny * (w + PAD) // 2 + 1
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    g, z, a = (np.repeat(rng.normal(0.0, s, (32, 1)), nk, axis=1) + 0j for s in (1, 1, 1))
    fast = data.copy()
    res_fast = correct_refpix(fast, amp, None, g, z, a)
    assert res_fast.fast_path
    monkeypatch.setattr(refpix, "_coefficients_are_flat", lambda *c: False)
    slow = data.copy()
    res_slow = correct_refpix(slow, amp, None, g, z, a)
    assert not res_slow.fast_path
    assert np.max(np.abs(fast - data)) > 10.0
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)
    np.testing.assert_allclose(res_fast.amp33, res_slow.amp33, rtol=0, atol=0)
    np.testing.assert_allclose(res_fast.correction_rms, res_slow.correction_rms, rtol=1e-6)
    # and both agree with the literal transcription
    exp_d, _ = _reference_refpix(
        data, amp, None, g, z, a, remove_offset=True, remove_trends=True, cosine=True, fft=True
    )
    np.testing.assert_allclose(fast, exp_d, rtol=0, atol=1e-4)


def test_shared_alpha_path_equals_literal_reference(monkeypatch):
    # gamma = zeta = 0 and one frequency-dependent alpha for all channels: one inverse FFT
    rng = np.random.default_rng(5)
    nf, ny, nx = 3, 32, 256
    w = nx // 32
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    _, _, a = _random_coefficients(rng, ny, w)
    g = np.zeros_like(a)
    a = np.repeat(a[:1], 32, axis=0)
    assert refpix._shared_alpha(g, g, a) is not None
    shared = data.copy()
    correct_refpix(shared, amp, None, g, g, a)
    exp_d, _ = _reference_refpix(
        data, amp, None, g, g, a, remove_offset=True, remove_trends=True, cosine=True, fft=True
    )
    assert np.max(np.abs(exp_d - data)) > 1.0
    np.testing.assert_allclose(shared, exp_d, rtol=0, atol=1e-4)
    monkeypatch.setattr(refpix, "_shared_alpha", lambda *c: None)
    general = data.copy()
    correct_refpix(general, amp, None, g, g, a)
    np.testing.assert_allclose(shared, general, rtol=0, atol=1e-4)


def _coefficient_sets(rng, ny, w):
    """Coefficients taking each path: none, flat (time domain), shared alpha, general."""
    nk = ny * (w + PAD) // 2 + 1
    g, z, a = _random_coefficients(rng, ny, w)
    zero = np.zeros((32, nk), complex)
    flat = tuple(np.repeat(rng.normal(0.0, 1.0, (32, 1)), nk, axis=1) + 0j for _ in range(3))
    return {
        "none": (None, None, None),
        "flat": flat,
        "shared": (zero, zero, np.repeat(a[:1], 32, axis=0)),
        "general": (g, z, a),
    }


@pytest.mark.parametrize("kind", ["none", "flat", "shared", "general"])
def test_frame_batches_and_amp33_dtype_do_not_change_results(monkeypatch, kind):
    # frames are processed in batches; integer amp33 is read as is: neither may change
    # a single bit of the output
    rng = np.random.default_rng(17)
    nf, ny, nx = 7, 24, 32 * 10
    w = nx // 32
    data, amp, _, _ = _scene(rng, nf, ny, nx)
    data[:, 3, 17] = 0.0  # a missing (zero) sample in a reference row
    amp16 = np.round(amp).astype(np.uint16)
    amp16[:, 2, 5] = 0  # a missing amp33 sample
    dq = np.zeros((ny, nx), np.uint32)
    dq[0, 3] = dq[ny - 1, nx - 2] = PixelFlag.BAD_REF_PIXEL
    coeffs = _coefficient_sets(rng, ny, w)[kind]
    outs = []
    for chunk, amp_in in ((1, amp16), (3, amp16.astype(np.float32)), (100, amp16)):
        monkeypatch.setattr(refpix, "_FRAME_CHUNK", chunk)
        out = data.copy()
        res = correct_refpix(out, amp_in, dq, *coeffs)
        outs.append((out, res))
    assert np.max(np.abs(outs[0][0] - data)) > 1.0
    for out, res in outs[1:]:
        np.testing.assert_array_equal(out, outs[0][0])
        np.testing.assert_array_equal(res.amp33, outs[0][1].amp33)
        np.testing.assert_array_equal(res.trend_slope, outs[0][1].trend_slope)
        np.testing.assert_allclose(res.correction_rms, outs[0][1].correction_rms, rtol=1e-12)
        np.testing.assert_allclose(res.correction_mean, outs[0][1].correction_mean, atol=1e-12)


def test_broadcast_coefficients_equal_full_arrays():
    # the step hands over repeated rows as broadcast views (zeros as one broadcast
    # value); they are never expanded and give bit-identical results
    rng = np.random.default_rng(18)
    nf, ny, nx = 3, 32, 256
    w = nx // 32
    nk = ny * (w + PAD) // 2 + 1
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    _, _, a = _random_coefficients(rng, ny, w)
    zero_b = np.broadcast_to(np.zeros(1, complex), (32, nk))
    alpha_b = np.broadcast_to(a[0], (32, nk))
    alpha_b64 = np.broadcast_to(a[0].astype(np.complex64), (32, nk))
    zero = np.zeros((32, nk), complex)
    cases = [
        ((zero_b, zero_b, alpha_b), (zero, zero, np.array(alpha_b))),
        ((zero_b, zero_b, alpha_b64), (zero, zero, alpha_b64.astype(np.complex128))),
    ]
    for coeffs, full in cases:
        checked = refpix._check_coefficients(*coeffs, nk, ny, w)
        assert [c.strides for c in checked] == [(0, 0), (0, 0), (0, 16)]
        assert refpix._shared_alpha(*checked) is not None
        out_b = data.copy()
        correct_refpix(out_b, amp, None, *coeffs)
        out_f = data.copy()
        correct_refpix(out_f, amp, None, *full)
        assert np.max(np.abs(out_b - data)) > 1.0
        np.testing.assert_array_equal(out_b, out_f)


@pytest.mark.parametrize("do_ref", [True, False])
def test_apply_kernel_matches_numpy_evaluation(do_ref):
    # the single-pass subtraction kernel, bit for bit against the same float64
    # arithmetic in numpy (read order, odd-channel reversal, reference columns,
    # trend only on non-zero samples)
    from rampcal.core import _refpix_kernels as k

    rng = np.random.default_rng(19)
    nf, ny, nx = 2, 6, 32 * 8
    w = nx // 32
    period = w + PAD
    tmean = 0.5 * (ny * period - 1)
    data = rng.normal(100.0, 10.0, (nf, ny, nx)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = 0.0
    slope = rng.normal(0.0, 0.01, (nf, 33))
    icept = rng.normal(0.0, 5.0, (nf, 33))
    ell = rng.normal(0.0, 3.0, (nf, ny, 4))
    rr = rng.normal(0.0, 3.0, (nf, ny, 4))
    series = rng.normal(0.0, 2.0, (nf, ny * period))
    gq, zq, aq = rng.normal(0.0, 1.0, (3, 32))
    expected = data.copy()
    total = np.zeros((nf, ny))
    kk = np.arange(w)
    for f in range(nf):
        for y in range(ny):
            base = y * period
            for c in range(32):
                cols = c * w + (w - 1 - kk if c % 2 else kk)
                x = data[f, y, cols].astype(np.float64)
                d = aq[c] * series[f, base : base + w]
                if do_ref:
                    d[:4] += gq[c] * ell[f, y] + zq[c] * rr[f, y]
                m = slope[f, c]
                t0 = m * (base - tmean) + icept[f, c]
                d = np.where(x != 0.0, d + (t0 + m * kk), d)
                expected[f, y, cols] = (x - d).astype(np.float32)
                total[f, y] += d.sum()
    out = data.copy()
    csum = np.zeros((nf, ny))
    csq = np.zeros((nf, ny))
    k._apply_rows(
        out, 0, nf, period, slope, icept, True, ell, rr, series, gq, zq, aq, do_ref, csum, csq
    )
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(csum, total, rtol=1e-12)


def test_drift_and_common_mode_removed_with_defaults():
    rng = np.random.default_rng(3)
    nf, ny, nx = 6, 128, 512
    data, amp, truth, _ = _scene(rng, nf, ny, nx)
    before = _drift_rms(data, truth)
    coeffs = default_refpix_coefficients(ny, nx // 32)
    res = correct_refpix(data, amp, None, *coeffs)
    after = _drift_rms(data, truth)
    assert res.fast_path
    assert before > 10.0
    assert after < before / 10.0
    # exact apart from the 2(L//2+1)/L normalisation of the common-mode term
    assert after < 0.01
    assert res.trend_slope.shape == (nf, 33)
    assert np.all(res.correction_rms > 0) and np.all(np.isfinite(res.correction_mean))


def test_drift_removed_by_trends_alone():
    rng = np.random.default_rng(4)
    nf, ny, nx = 5, 64, 512
    data, amp, truth, _ = _scene(rng, nf, ny, nx, common=False)
    before = _drift_rms(data, truth)
    correct_refpix(data, amp, None, None, None, None)
    after = _drift_rms(data, truth)
    assert before > 10.0
    assert after < 1e-3


def test_common_mode_needs_alpha():
    rng = np.random.default_rng(5)
    nf, ny, nx = 4, 64, 512
    data, amp, truth, _ = _scene(rng, nf, ny, nx, drift=False)
    before = _drift_rms(data, truth)
    no_alpha = data.copy()
    correct_refpix(no_alpha, amp, None, None, None, None)
    with_alpha = data.copy()
    correct_refpix(with_alpha, amp, None, *default_refpix_coefficients(ny, nx // 32))
    # trends alone leave the common-mode noise (only its linear part goes)
    assert _drift_rms(no_alpha, truth) > 0.9 * before
    assert _drift_rms(with_alpha, truth) < before / 100.0


def test_switches_leave_their_effect_in_place():
    rng = np.random.default_rng(6)
    nf, ny, nx = 4, 64, 512
    w = nx // 32
    data, amp, truth, _ = _scene(rng, nf, ny, nx, common=False)
    coeffs = default_refpix_coefficients(ny, w)
    # no trends and no coefficients: nothing to do, bit-identical output
    out = data.copy()
    res = correct_refpix(out, amp, None, None, None, None, remove_trends=False)
    np.testing.assert_array_equal(out, data)
    assert np.all(res.trend_slope == 0) and np.all(res.correction_rms == 0)
    # no trends but alpha = 1: the amp33 drift replaces each channel's own drift
    out = data.copy()
    correct_refpix(out, amp, None, *coeffs, remove_trends=False)
    assert _drift_rms(out, truth) > 0.5 * _drift_rms(data, truth)
    # remove_offset keeps each pixel's level; without it the trend intercept
    # (fitted on the raw reference rows, ~1000 DN bias) is subtracted as well
    kept = data.copy()
    correct_refpix(kept, amp, None, None, None, None, remove_offset=True)
    lost = data.copy()
    correct_refpix(lost, amp, None, None, None, None, remove_offset=False)
    assert abs(np.mean(kept - data)) < 30.0
    assert np.mean(data - lost) == pytest.approx(1000.0, abs=30.0)
    assert _drift_rms(lost, truth) < 1.0  # the drift itself is still removed


def test_cosine_interpolation_fills_missing_amp33_samples():
    rng = np.random.default_rng(7)
    nf, ny, nx = 3, 64, 512
    w = nx // 32
    period = w + PAD
    # a smooth amp33 series (in read order) so the interpolation is accurate
    t = np.arange(ny * period, dtype=np.float64).reshape(ny, period)[:, :w]
    amp = np.broadcast_to(500.0 + 40.0 * np.sin(2 * np.pi * t / 4000.0), (nf, ny, w)).copy()
    true_amp = amp.copy()
    missing = (slice(None), [10, 11, 30], [5, 5, 0])
    amp[missing] = 0.0
    data = rng.normal(100.0, 1.0, (nf, ny, nx)).astype(np.float32)
    kw = {"remove_offset": False, "remove_trends": False}
    on = correct_refpix(data.copy(), amp, None, None, None, None, **kw)
    off = correct_refpix(data.copy(), amp, None, None, None, None, cosine_interpolate=False, **kw)
    np.testing.assert_array_equal(off.amp33[missing], 0.0)
    np.testing.assert_allclose(on.amp33[missing], true_amp[missing], rtol=0, atol=0.3)
    present = amp != 0
    np.testing.assert_array_equal(on.amp33[present], amp[present].astype(np.float32))


def test_fft_interpolation_is_the_apodised_spectrum_filter():
    # the pad samples of amp33 only matter through the FFT correction: compare the
    # general path with and without fft_interpolate to the literal transcription
    rng = np.random.default_rng(8)
    nf, ny, nx = 2, 16, 256
    data, amp, _, _ = _scene(rng, nf, ny, nx, bias=False)
    g, z, a = _random_coefficients(rng, ny, nx // 32)
    outs = {}
    for fft in (True, False):
        out = data.copy()
        correct_refpix(out, amp, None, g, z, a, fft_interpolate=fft)
        exp, _ = _reference_refpix(
            data, amp, None, g, z, a, remove_offset=True, remove_trends=True, cosine=True, fft=fft
        )
        np.testing.assert_allclose(out, exp, rtol=0, atol=1e-4)
        outs[fft] = out
    assert np.max(np.abs(outs[True] - outs[False])) > 1e-2


def test_ramp_signal_preserved():
    rng = np.random.default_rng(9)
    nf, ny, nx = 6, 128, 512
    coeffs = default_refpix_coefficients(ny, nx // 32)
    # drift only: the corrected slopes are the true ones
    data, amp, _, slopes = _scene(rng, nf, ny, nx, common=False)
    assert np.max(np.abs(_fit_slopes(data) - slopes)[4:-4, 4:-4]) > 1.0
    correct_refpix(data, amp, None, *coeffs)
    assert np.max(np.abs(_fit_slopes(data) - slopes)[4:-4, 4:-4]) < 1e-3
    # drift + common mode: the correction does not depend on the science signal
    rng = np.random.default_rng(10)
    with_sig, amp, truth, slopes = _scene(rng, nf, ny, nx)
    no_sig = (with_sig - (truth - truth[0])).astype(np.float32)
    correct_refpix(with_sig, amp, None, *coeffs)
    correct_refpix(no_sig, amp, None, *coeffs)
    dslope = _fit_slopes(with_sig) - _fit_slopes(no_sig)
    assert np.max(np.abs(dslope - slopes)) < 1e-3


def test_odd_channels_reversed_into_read_order():
    # a per-row sawtooth in read time whose amplitude changes from frame to frame, the
    # same in every channel and amp33: in detector columns it runs one way in even
    # channels and the other way in odd ones
    nf, ny, nx = 3, 32, 256
    w = nx // 32
    rng = np.random.default_rng(11)
    amplitude = np.array([-2.0, 1.0, 4.0])
    saw = amplitude[:, None, None] * np.arange(w, dtype=np.float64) * np.ones((nf, ny, 1))
    ro = np.broadcast_to(saw[:, None], (nf, 32, ny, w))
    data = (_read_order_to_detector(ro) + rng.normal(200.0, 10.0, (ny, nx))).astype(np.float32)
    varying = data - data.mean(axis=0)
    assert varying[2, 5, 1] > varying[2, 5, 0] and varying[2, 5, w + 1] < varying[2, 5, w]
    assert np.max(np.abs(varying)) > 10.0
    amp = (saw + 200.0).astype(np.float32)
    out = data.copy()
    correct_refpix(out, amp, None, *default_refpix_coefficients(ny, w), remove_trends=False)
    # with alpha = 1 the amp33 pattern (read order) cancels in even and odd channels;
    # up to the 2/L normalisation excess; a wrong reversal would leave
    # |a_f|*(w-1-2k), as large as the pattern itself, in the odd ones
    resid = out - out.mean(axis=0)
    assert np.max(np.abs(resid)) < 0.01 * np.max(np.abs(varying))


@pytest.mark.parametrize("which", ["gamma", "zeta"])
def test_left_and_right_reference_columns(which):
    # gamma picks channel 0's columns 0..3, zeta channel 31's read-order columns 0..3
    # (detector columns nx-1..nx-4); both are subtracted from read-order columns 0..3
    nf, ny, nx = 2, 16, 256
    w = nx // 32
    period = w + PAD
    length = ny * period
    nk = length // 2 + 1
    rng = np.random.default_rng(12)
    data = np.zeros((nf, ny, nx), np.float32)
    pattern = rng.normal(10.0, 3.0, (nf, ny, 4)).astype(np.float32)
    if which == "gamma":
        data[:, :, 0:4] = pattern
    else:
        data[:, :, nx - 1 : nx - 5 : -1] = pattern
    coef = np.full((32, nk), 0.5 + 0j)
    zero = np.zeros((32, nk), complex)
    g, z = (coef, zero) if which == "gamma" else (zero, coef)
    out = data.copy()
    res = correct_refpix(
        out,
        np.zeros((nf, ny, w), np.float32),
        None,
        g,
        z,
        zero,
        remove_offset=False,
        remove_trends=False,
        cosine_interpolate=False,
        fft_interpolate=False,
    )
    assert res.fast_path
    scale = 2 * nk / length * period / 4 * 0.5
    expected_ro = np.zeros((nf, 32, ny, w))
    expected_ro[:, :, :, :4] = scale * pattern[:, None].astype(np.float64)
    expected = data - _read_order_to_detector(expected_ro)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_bad_reference_pixels_zeroed_and_excluded():
    rng = np.random.default_rng(13)
    nf, ny, nx = 4, 64, 512
    data, amp, truth, _ = _scene(rng, nf, ny, nx, common=False)
    dq = np.zeros((ny, nx), np.uint32)
    hot = (np.array([0, 1, 62, 63, 2]), np.array([10, 200, 33, 400, 0]))
    dq[hot] = PixelFlag.BAD_REF_PIXEL
    data[:, hot[0], hot[1]] = 1e6  # wild values would spoil the trend fits
    ref = data.copy()
    ref[:, hot[0], hot[1]] = 0.0
    res = correct_refpix(data, amp, dq, None, None, None)
    assert res.n_bad_ref_pixels == 5
    assert _drift_rms(data, truth) < 1e-3
    # zeroed pixels stay missing: no trend is subtracted there
    np.testing.assert_array_equal(data[:, hot[0], hot[1]], 0.0)


def test_single_frame_has_no_nan():
    rng = np.random.default_rng(14)
    ny, nx = 32, 256
    data, amp, _, _ = _scene(rng, 1, ny, nx)
    a = data.copy()
    res = correct_refpix(a, amp, None, *default_refpix_coefficients(ny, nx // 32))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(res.amp33))
    # with one frame the offset removal is skipped
    b = data.copy()
    correct_refpix(b, amp, None, *default_refpix_coefficients(ny, nx // 32), remove_offset=False)
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - data)) > 1.0


def test_integer_amp33_and_exact_zero_residuals():
    # integer data, odd number of frames: the middle frame often equals the mean.
    # Such pixels must still be detrended (a residual of exactly 0 is not missing).
    rng = np.random.default_rng(15)
    nf, ny, nx = 3, 32, 256
    w = nx // 32
    data, amp, truth, _ = _scene(rng, nf, ny, nx, common=False, signal=False)
    base = np.round(rng.normal(1000.0, 30.0, (ny, nx)))
    step = rng.integers(-2, 3, (ny, nx))
    clean = base + step * np.arange(nf)[:, None, None]  # X_1 == mean exactly
    drift = data - truth
    raw = np.round(clean + drift).astype(np.float32)
    # ~1% of the samples equal their pixel's mean over frames (residual exactly 0)
    assert np.count_nonzero(raw == raw.astype(np.float64).mean(axis=0)) > 100
    amp16 = np.round(amp).astype(np.uint16)
    out = raw.copy()
    res = correct_refpix(out, amp16, None, None, None, None)
    assert res.amp33.dtype == np.float32 and res.amp33.shape == (nf, ny, w)
    resid = out - clean
    resid -= resid.mean(axis=0)
    assert np.max(np.abs(resid[:, 4:-4, 4:-4])) < 1.0  # only the rounding of the drift


def test_shape_and_type_errors():
    nf, ny, nx = 2, 16, 256
    w = nx // 32
    nk = ny * (w + PAD) // 2 + 1
    data = np.ones((nf, ny, nx), np.float32)
    amp = np.ones((nf, ny, w), np.float32)
    good = np.zeros((32, nk), complex)
    bad = np.zeros((32, nk - 1), complex)
    with pytest.raises(ValueError, match=rf"\(32, {nk}\)"):
        correct_refpix(data, amp, None, bad, good, good)
    with pytest.raises(ValueError, match="alpha"):
        correct_refpix(data, amp, None, good, good, bad)
    with pytest.raises(ValueError, match="multiple of 32"):
        correct_refpix(np.ones((nf, ny, 250), np.float32), amp, None, None, None, None)
    with pytest.raises(ValueError, match="amp33"):
        correct_refpix(data, amp[:, :, :-1], None, None, None, None)
    with pytest.raises(ValueError, match="ny"):
        correct_refpix(np.ones((nf, 6, nx), np.float32), amp[:, :6], None, None, None, None)
    with pytest.raises(TypeError, match="float32"):
        correct_refpix(data.astype(np.float64), amp, None, None, None, None)
    with pytest.raises(ValueError, match="pixeldq"):
        correct_refpix(data, amp, np.zeros((ny, nx - 32), np.uint32), None, None, None)


def test_default_coefficients():
    g, z, a = default_refpix_coefficients(4096, 128)
    assert g.shape == z.shape == a.shape == (32, 286_721)
    assert g.dtype == np.complex128
    assert np.all(g[:, :5] == 0) and np.all(a[:, -5:] == 1)
    assert refpix.refpix_series_length(4096, 128) == 573_440
