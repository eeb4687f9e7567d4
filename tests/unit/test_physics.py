"""The key-rate model against the published figures of ETSI-NOTES §4.

Tolerances: the notes quote two or three significant figures ("≈ 1 Mbit/s", "≈ 13.8 Mbit/s"),
so each check allows the rounding of the quoted figure plus a little, and no more: a fixed
μ = 0.5 (field 957 kbit/s, high-rate 13.28 Mbit/s) or a hard dead-time cap (commercial
13.7 kbit/s) falls outside them, so these tests pin the modelling choices documented in
docs/topology.md.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.emulator.physics import (
    ABORT_QBER,
    PRESETS,
    LinkRate,
    binary_entropy,
    channel_loss_db,
    intercept_resend_error,
    link_rate,
    secret_key_rate,
    signal_intensity,
)


def test_presets_are_exactly_the_three_named() -> None:
    assert set(PRESETS) == {"commercial", "field", "high-rate"}


@pytest.mark.parametrize(
    ("preset", "loss_db", "published_bps", "tolerance"),
    [
        ("field", 10.0, 1.0e6, 0.03),  # field-2010, 50 km
        ("field", 14.5, 340e3, 0.03),  # Tokyo 45 km link (measured 304 kbit/s)
        ("high-rate", 2.0, 13.8e6, 0.01),  # published 13.72 Mbit/s
    ],
)
def test_published_figures(
    preset: str, loss_db: float, published_bps: float, tolerance: float
) -> None:
    rate = secret_key_rate(PRESETS[preset], loss_db)
    assert not rate.aborted
    assert rate.skr_bps == pytest.approx(published_bps, rel=tolerance)
    assert 0.015 < rate.qber < 0.025  # e_d = 2 % plus a little dark-count noise


def test_commercial_calibration_at_50_km() -> None:
    rate = link_rate("commercial", 50.0)
    assert rate.skr_bps == pytest.approx(12e3, rel=0.05)
    assert not rate.aborted


def test_dead_time_saturates_the_commercial_link() -> None:
    params = PRESETS["commercial"]
    without = secret_key_rate(replace(params, dead_time_s=0.0), 10.0)
    with_dead_time = secret_key_rate(params, 10.0)
    mu = signal_intensity(params, 10.0)
    assert 0.55 < mu < 0.75  # the optimiser ignores the detector, so both runs use this μ
    # ≈ 0.01·μ·1e8 ≈ 640 k detections/s against 10 µs: only 1/(1 + D·τ) are registered.
    detections = (1e-5 + 1.0 - math.exp(-0.1 * 0.1 * mu)) * 1e8
    assert with_dead_time.skr_bps == pytest.approx(
        without.skr_bps / (1.0 + detections * 10e-6), rel=1e-6
    )
    assert with_dead_time.qber == without.qber


def test_fixed_mu_is_used_when_not_optimised() -> None:
    fixed = replace(PRESETS["high-rate"], optimise_mu=False, mu=0.5)
    assert secret_key_rate(fixed, 2.0).skr_bps == pytest.approx(13.28e6, rel=0.01)
    assert secret_key_rate(fixed, 2.0).skr_bps < secret_key_rate(PRESETS["high-rate"], 2.0).skr_bps


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_rate_decreases_with_length(preset: str) -> None:
    rates = [link_rate(preset, km).skr_bps for km in range(0, 400, 5)]
    assert rates[0] > 0
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates))
    assert all(later < earlier for earlier, later in itertools.pairwise(rates) if earlier > 0)
    assert rates[-1] == 0.0  # 400 km: dark counts win, the link aborts


def test_long_link_aborts_when_dark_counts_dominate() -> None:
    rate = link_rate("field", 300.0)
    assert rate.aborted
    assert rate.skr_bps == 0.0


def test_eavesdropping_at_50_km_kills_the_key_near_one_fifth() -> None:
    fractions = [i / 200 for i in range(0, 101)]
    rates = {f: link_rate("field", 50.0, eve_fraction=f) for f in fractions}
    alive = [f for f, rate in rates.items() if not rate.aborted]
    crossing = max(alive)
    # With μ optimised for the undisturbed link the key dies at f ≈ 0.15 (QBER ≈ 5.7 %); with
    # μ = 0.5 at f ≈ 0.18. The notes say "near f ≈ 0.2 (QBER ≈ 7 %)".
    assert 0.12 <= crossing <= 0.22
    assert rates[0.1].skr_bps > 0.25 * rates[0.0].skr_bps
    assert rates[0.2].aborted and rates[0.2].skr_bps == 0.0
    assert rates[0.2].qber == pytest.approx(0.068, abs=0.002)
    qbers = [rates[f].qber for f in fractions]
    assert all(b > a for a, b in itertools.pairwise(qbers))


def test_qber_above_eleven_percent_aborts_an_explicit_link() -> None:
    assert ABORT_QBER == 0.11
    just_below = link_rate("field", 20.0, skr_bps=50e3, qber=0.109)
    assert not just_below.aborted and just_below.skr_bps == 50e3
    above = link_rate("field", 20.0, skr_bps=50e3, qber=0.111)
    assert above.aborted and above.skr_bps == 0.0
    assert link_rate("field", 20.0, qber=0.12).aborted


def test_heavy_eavesdropping_aborts_by_qber() -> None:
    rate = link_rate("field", 5.0, eve_fraction=0.5)
    assert rate.qber > ABORT_QBER
    assert rate.aborted and rate.skr_bps == 0.0


def test_explicit_rate_overrides_the_model_and_still_falls_to_zero() -> None:
    plain = link_rate("field", 20.0, skr_bps=50e3, qber=0.02)
    assert plain == LinkRate(skr_bps=50e3, qber=0.02, aborted=False)
    some_eve = link_rate("field", 20.0, skr_bps=50e3, qber=0.02, eve_fraction=0.1)
    assert some_eve.qber == pytest.approx(0.02 + 0.1 * 0.96 / 4)
    assert 0 < some_eve.skr_bps < 50e3
    heavy = link_rate("field", 20.0, skr_bps=50e3, qber=0.02, eve_fraction=0.35)
    assert heavy.aborted and heavy.skr_bps == 0.0


def test_explicit_rate_without_qber_reports_the_model_qber() -> None:
    rate = link_rate("field", 20.0, skr_bps=1234.0)
    assert rate.skr_bps == 1234.0
    assert rate.qber == pytest.approx(link_rate("field", 20.0).qber)


def test_explicit_qber_alone_drives_the_model() -> None:
    model = link_rate("field", 20.0)
    noisier = link_rate("field", 20.0, qber=0.05)
    assert noisier.qber == 0.05
    assert 0 < noisier.skr_bps < model.skr_bps
    cleaner = link_rate("field", 20.0, qber=0.01)
    assert cleaner.skr_bps > model.skr_bps


def test_channel_loss() -> None:
    assert channel_loss_db(50.0) == pytest.approx(10.0)
    assert channel_loss_db(10.0, extra_loss_db=1.5) == pytest.approx(3.5)
    assert channel_loss_db(10.0, alpha_db_per_km=0.17) == pytest.approx(1.7)
    extra = link_rate("field", 40.0, extra_loss_db=2.0)
    assert extra.skr_bps == pytest.approx(link_rate("field", 50.0).skr_bps, rel=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: channel_loss_db(-1.0),
        lambda: channel_loss_db(math.nan),
        lambda: channel_loss_db(1.0, extra_loss_db=-0.1),
        lambda: link_rate("laboratory", 10.0),
        lambda: link_rate("field", 10.0, eve_fraction=1.5),
        lambda: link_rate("field", 10.0, qber=-0.1),
        lambda: link_rate("field", 10.0, skr_bps=-5.0),
        lambda: secret_key_rate(PRESETS["field"], math.inf),
    ],
)
def test_bad_input_is_a_value_error(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="commercial, field, high-rate"):
        link_rate("lab", 1.0)


def test_helpers() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-3)
    assert intercept_resend_error(0.0, 1.0) == 0.25
    assert intercept_resend_error(0.02, 0.0) == 0.02


@given(
    preset=st.sampled_from(sorted(PRESETS)),
    length=st.floats(min_value=0.0, max_value=500.0),
    extra=st.floats(min_value=0.0, max_value=30.0),
    eve=st.floats(min_value=0.0, max_value=1.0),
)
def test_model_outputs_are_always_sane(
    preset: str, length: float, extra: float, eve: float
) -> None:
    rate = link_rate(preset, length, extra_loss_db=extra, eve_fraction=eve)
    assert rate.skr_bps >= 0.0 and math.isfinite(rate.skr_bps)
    assert 0.0 <= rate.qber <= 0.5
    assert rate.aborted == (rate.skr_bps == 0.0)
    if rate.qber > ABORT_QBER:
        assert rate.aborted
