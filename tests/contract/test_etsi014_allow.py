"""ETSI 014's 405 answers name every method the resource serves (RFC 9110 15.5.6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.pki import LabPki
from tests.harness.etsi014 import KmHarness, make_pki


@pytest.fixture(scope="module")
def km(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmHarness]:
    pki: LabPki = make_pki(tmp_path_factory.mktemp("pki"))
    harness = KmHarness(tmp_path_factory.mktemp("km"), pki)
    yield harness
    harness.close()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    ("resource", "allowed"),
    [("enc_keys", {"GET", "POST"}), ("dec_keys", {"GET", "POST"}), ("status", {"GET"})],
)
def test_a_method_not_served_lists_every_served_method_in_allow(
    km: KmHarness, method: str, resource: str, allowed: set[str]
) -> None:
    with km.client("a") as a:
        response = a.request(method, f"/d/{resource}")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert "message" in response.json()
