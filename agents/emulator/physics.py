"""Physical key-rate model of a QKD link: decoy-state BB84, asymptotic, GLLP.

The closed form of /work/shared/ETSI-NOTES.md §4. Pure functions, no I/O, microseconds per call.

    η      = η_Bob · 10^(−loss_dB/10)
    Q_μ    = Y0 + 1 − e^(−ημ)                  E_μ·Q_μ = e0·Y0 + e_d·(1 − e^(−ημ))
    Y1     ≈ Y0 + η     e1 = (e0·Y0 + e_d·η)/Y1     Q1 = Y1·μ·e^(−μ)
    R      = q·[Q1·(1 − H2(e1)) − f_EC·Q_μ·H2(E_μ)]      (secret bits per pulse)
    SKR    = R · rep_rate · live-time fraction of the detector (dead time)

Two modelling choices make the published figures land (see docs/topology.md, "Physics"):
- μ is optimised per link when `optimise_mu` is set (the notes' "or optimised per link"); with
  a fixed μ = 0.5 the `high-rate` preset gives 13.3 instead of 13.8 Mbit/s.
- Dead time is a non-paralysable detector: of D detections per second only D/(1 + D·τ) are
  registered, so the key rate saturates smoothly instead of at a hard cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

ABORT_QBER = 0.11  # above this BB84 distils no secret key: the link aborts
E0 = 0.5  # error probability of a dark count (random bit)
DEFAULT_ALPHA_DB_PER_KM = 0.2

_MU_LOW, _MU_HIGH = 0.01, 1.0  # search interval of the μ optimiser
_MU_ITERATIONS = 40  # golden-section steps: interval shrinks by 0.618^40 ≈ 4e-9


@dataclass(frozen=True)
class PhysicsParams:
    """Hardware of a link's two modules. Times in seconds, rates in Hz, probabilities in [0, 1]."""

    rep_rate_hz: float  # pulse repetition rate of the source
    eta_bob: float  # Bob's detection efficiency including his internal loss
    dark_count_y0: float  # dark-count probability per gate (Y0)
    misalignment_ed: float  # optical misalignment error (e_d)
    f_ec: float  # error-correction inefficiency (≥ 1)
    sifting_q: float  # basis-sifting factor (q)
    mu: float = 0.5  # signal intensity, used when `optimise_mu` is false
    dead_time_s: float = 0.0  # detector dead time (0: none)
    alpha_db_per_km: float = DEFAULT_ALPHA_DB_PER_KM  # fibre attenuation
    optimise_mu: bool = False  # choose μ per link to maximise R (then `mu` is unused)


_FIELD = PhysicsParams(
    rep_rate_hz=1e9,
    eta_bob=0.06,
    dark_count_y0=2e-6,
    misalignment_ed=0.02,
    f_ec=1.16,
    sifting_q=0.9,
    optimise_mu=True,
)

# Keys exactly as the topology files name them. `field` = field-2010 (Tokyo network),
# `high-rate` = high-rate-2018, `commercial` = a calibration fit to ≈ 12 kbit/s at 50 km.
PRESETS: Mapping[str, PhysicsParams] = MappingProxyType(
    {
        "field": _FIELD,
        "high-rate": replace(_FIELD, eta_bob=0.13),
        "commercial": PhysicsParams(
            rep_rate_hz=1e8,
            eta_bob=0.1,
            dark_count_y0=1e-5,
            misalignment_ed=0.02,
            f_ec=1.2,
            sifting_q=0.5,
            dead_time_s=10e-6,
            optimise_mu=True,
        ),
    }
)


@dataclass(frozen=True)
class LinkRate:
    skr_bps: float  # secret key rate, 0 when aborted
    qber: float  # quantum bit error rate as the link reports it (E_μ)
    aborted: bool  # no secret key can be distilled


def binary_entropy(p: float) -> float:
    """H2(p) in bits; 0 at the ends and outside (0, 1)."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def channel_loss_db(
    length_km: float, extra_loss_db: float = 0.0, alpha_db_per_km: float = DEFAULT_ALPHA_DB_PER_KM
) -> float:
    """Loss of a fibre of `length_km` plus a fixed loss (connectors, splices, switches)."""
    if not (math.isfinite(length_km) and length_km >= 0.0):
        raise ValueError(f"length_km must be a finite number ≥ 0, not {length_km!r}")
    if not (math.isfinite(extra_loss_db) and extra_loss_db >= 0.0):
        raise ValueError(f"extra_loss_db must be a finite number ≥ 0, not {extra_loss_db!r}")
    return alpha_db_per_km * length_km + extra_loss_db


def intercept_resend_error(error: float, eve_fraction: float) -> float:
    """Error rate after intercept-resend on a fraction of the signals: e + f·(1 − 2e)/4."""
    return error + eve_fraction * (1.0 - 2.0 * error) / 4.0


@dataclass(frozen=True)
class _PulseStats:
    gain: float  # Q_μ
    qber: float  # E_μ
    single_gain: float  # Q1
    single_error: float  # e1


def _pulse_stats(params: PhysicsParams, eta: float, mu: float, ed: float) -> _PulseStats:
    y0 = params.dark_count_y0
    clicks = -math.expm1(-eta * mu)  # 1 − e^(−ημ), accurate for tiny ημ
    gain = y0 + clicks
    y1 = y0 + eta
    return _PulseStats(
        gain=gain,
        qber=(E0 * y0 + ed * clicks) / gain,
        single_gain=y1 * mu * math.exp(-mu),
        single_error=(E0 * y0 + ed * eta) / y1,
    )


def _key_per_pulse(params: PhysicsParams, stats: _PulseStats, eve_fraction: float) -> float:
    e1 = intercept_resend_error(stats.single_error, eve_fraction)
    e_mu = intercept_resend_error(stats.qber, eve_fraction)
    return params.sifting_q * (
        stats.single_gain * (1.0 - binary_entropy(e1))
        - params.f_ec * stats.gain * binary_entropy(e_mu)
    )


def _best_mu(params: PhysicsParams, eta: float, ed: float) -> float:
    """μ maximising the key per pulse of the undisturbed link (R is unimodal in μ)."""

    def rate(mu: float) -> float:
        return _key_per_pulse(params, _pulse_stats(params, eta, mu, ed), 0.0)

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    low, high = _MU_LOW, _MU_HIGH
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    rate_left, rate_right = rate(left), rate(right)
    for _ in range(_MU_ITERATIONS):
        if rate_left < rate_right:
            low, left, rate_left = left, right, rate_right
            right = low + ratio * (high - low)
            rate_right = rate(right)
        else:
            high, right, rate_right = right, left, rate_left
            left = high - ratio * (high - low)
            rate_left = rate(left)
    return (low + high) / 2.0


def _signal_mu(params: PhysicsParams, eta: float, ed: float) -> float:
    return _best_mu(params, eta, ed) if params.optimise_mu else params.mu


def signal_intensity(params: PhysicsParams, loss_db: float) -> float:
    """The μ the link uses at `loss_db`: the optimum when `optimise_mu`, else `params.mu`."""
    eta = params.eta_bob * 10.0 ** (-loss_db / 10.0)
    return _signal_mu(params, eta, params.misalignment_ed)


def _check_fraction(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], not {value!r}")


def _model(params: PhysicsParams, loss_db: float, eve_fraction: float, ed: float) -> LinkRate:
    """The model with misalignment `ed` (the preset's, or one derived from a given QBER)."""
    if not (math.isfinite(loss_db) and loss_db >= 0.0):
        raise ValueError(f"loss_db must be a finite number ≥ 0, not {loss_db!r}")
    _check_fraction("eve_fraction", eve_fraction)
    eta = params.eta_bob * 10.0 ** (-loss_db / 10.0)
    # Alice sets μ for her link, not for an eavesdropper she does not know about.
    mu = _signal_mu(params, eta, ed)
    stats = _pulse_stats(params, eta, mu, ed)
    qber = intercept_resend_error(stats.qber, eve_fraction)
    per_pulse = _key_per_pulse(params, stats, eve_fraction)
    detections = stats.gain * params.rep_rate_hz
    live_fraction = 1.0 / (1.0 + detections * params.dead_time_s)
    skr = per_pulse * params.rep_rate_hz * live_fraction
    aborted = per_pulse <= 0.0 or qber > ABORT_QBER
    return LinkRate(skr_bps=0.0 if aborted else skr, qber=qber, aborted=aborted)


def secret_key_rate(params: PhysicsParams, loss_db: float, eve_fraction: float = 0.0) -> LinkRate:
    """Secret key rate of a link with `loss_db` of channel loss; Eve intercepts `eve_fraction`."""
    return _model(params, loss_db, eve_fraction, params.misalignment_ed)


def _secret_fraction(qber: float, f_ec: float) -> float:
    """Key left per sifted bit when single photons dominate (e1 ≈ E): 1 − (1 + f_EC)·H2(E)."""
    return 1.0 - (1.0 + f_ec) * binary_entropy(qber)


def _resolve(preset: str | PhysicsParams) -> PhysicsParams:
    if isinstance(preset, PhysicsParams):
        return preset
    params = PRESETS.get(preset)
    if params is None:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    return params


def link_rate(
    preset: str | PhysicsParams,
    length_km: float,
    extra_loss_db: float = 0.0,
    eve_fraction: float = 0.0,
    skr_bps: float | None = None,
    qber: float | None = None,
) -> LinkRate:
    """Key rate of a link as a topology describes it.

    - Neither `skr_bps` nor `qber`: the physical model.
    - `qber` alone: the model with the misalignment that yields this QBER (rate follows).
    - `skr_bps` (with or without `qber`): that rate at that QBER (default: the model's QBER).
      An eavesdropper raises the QBER as in the model and scales the rate by the secret
      fraction 1 − (1 + f_EC)·H2(E) relative to the undisturbed link, so it still drops to 0.
    """
    params = _resolve(preset)
    _check_fraction("eve_fraction", eve_fraction)
    if qber is not None:
        _check_fraction("qber", qber)
    if skr_bps is not None and not (math.isfinite(skr_bps) and skr_bps >= 0.0):
        raise ValueError(f"skr_bps must be a finite number ≥ 0, not {skr_bps!r}")
    loss = channel_loss_db(length_km, extra_loss_db, params.alpha_db_per_km)
    if skr_bps is None:
        ed = params.misalignment_ed if qber is None else _misalignment_for(params, loss, qber)
        rate = _model(params, loss, eve_fraction, ed)
        if qber is None:
            return rate
        # Report the QBER asked for even where dark counts alone exceed it.
        reported = intercept_resend_error(qber, eve_fraction)
        aborted = rate.aborted or reported > ABORT_QBER
        return LinkRate(skr_bps=0.0 if aborted else rate.skr_bps, qber=reported, aborted=aborted)
    base_qber = qber if qber is not None else secret_key_rate(params, loss).qber
    reported = intercept_resend_error(base_qber, eve_fraction)
    if reported > ABORT_QBER:
        return LinkRate(skr_bps=0.0, qber=reported, aborted=True)
    base_fraction = _secret_fraction(base_qber, params.f_ec)
    if eve_fraction == 0.0:
        scale = 1.0
    elif base_fraction > 0.0:
        scale = max(0.0, _secret_fraction(reported, params.f_ec) / base_fraction)
    else:
        # The given QBER already leaves no margin in the model: fall linearly to the abort line.
        scale = max(0.0, (ABORT_QBER - reported) / (ABORT_QBER - base_qber))
    skr = skr_bps * scale
    aborted = skr <= 0.0
    return LinkRate(skr_bps=0.0 if aborted else skr, qber=reported, aborted=aborted)


def _misalignment_for(params: PhysicsParams, loss_db: float, qber: float) -> float:
    """e_d such that the undisturbed link reports `qber` (≥ 0: dark counts set a floor)."""
    eta = params.eta_bob * 10.0 ** (-loss_db / 10.0)
    # μ barely moves E_μ (both terms scale with the click probability), so solve at the
    # preset's own μ and let the model re-optimise μ afterwards.
    mu = _signal_mu(params, eta, params.misalignment_ed)
    clicks = -math.expm1(-eta * mu)
    if clicks <= 0.0:
        return params.misalignment_ed
    gain = params.dark_count_y0 + clicks
    return max(0.0, (qber * gain - E0 * params.dark_count_y0) / clicks)
