"""ETSI GS QKD 014 against a real KM front end: uvicorn, mutual TLS, lab PKI, SQLite store."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from km.access import AccessPolicy
from km.etsi014.server import TlsFiles, client_tls_context
from km.etsi014.service import Etsi014Limits
from lab.pki import LabPki, create_lab_pki
from tests.harness.etsi014 import KmHarness, make_pki

ROOT = Path(__file__).resolve().parents[2]
STATUS_FIELDS = {
    "source_KME_ID",
    "target_KME_ID",
    "master_SAE_ID",
    "slave_SAE_ID",
    "key_size",
    "stored_key_count",
    "max_key_count",
    "max_key_per_request",
    "max_key_size",
    "min_key_size",
    "max_SAE_ID_count",
    "status_extension",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def km(tmp_path_factory: pytest.TempPathFactory, pki: LabPki) -> Iterator[KmHarness]:
    harness = KmHarness(tmp_path_factory.mktemp("km"), pki)
    yield harness
    harness.close()


def enc(client: httpx.Client, slave: str, **params: int) -> list[dict[str, str]]:
    response = client.get(f"/{slave}/enc_keys", params=params)
    assert response.status_code == 200, response.text
    keys: list[dict[str, str]] = response.json()["keys"]
    return keys


def test_status_has_every_field(km: KmHarness) -> None:
    with km.client("a") as a:
        local = a.get("/b/status")
        remote = a.get("/d/status")
    assert local.status_code == 200 and remote.status_code == 200
    body = local.json()
    assert set(body) == STATUS_FIELDS
    assert body["source_KME_ID"] == "kme-n1" and body["target_KME_ID"] == "kme-n1"
    assert (body["master_SAE_ID"], body["slave_SAE_ID"]) == ("a", "b")
    assert body["key_size"] == 256
    assert (body["min_key_size"], body["max_key_size"]) == (64, 1024)
    assert body["max_key_per_request"] == 128 and body["max_SAE_ID_count"] == 16
    assert body["stored_key_count"] == body["max_key_count"] == 100_000
    assert body["status_extension"]["key_source"] == "csprng"
    other = remote.json()
    assert other["target_KME_ID"] == "kme-n2"
    assert other["status_extension"]["key_source"] == "relay"
    assert (other["stored_key_count"], other["max_key_count"]) == (0, 3)


def test_enc_get_then_dec_get_and_post_give_the_same_keys(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b:
        keys = enc(a, "b", number=3, size=512)
        assert len(keys) == 3 and len({k["key_ID"] for k in keys}) == 3
        assert all(len(base64.b64decode(k["key"])) == 64 for k in keys)
        single = b.get("/a/dec_keys", params={"key_ID": keys[0]["key_ID"]})
        assert single.status_code == 200
        assert single.json()["keys"] == [keys[0]]
        rest = b.post(
            "/a/dec_keys",
            json={
                # unknown fields (as some field clients send) are ignored
                "key_IDs": [{"key_ID": k["key_ID"], "master_SAE_ID": "a"} for k in keys[1:]],
                "vendor_field": 1,
            },
        )
        assert rest.status_code == 200, rest.text
        assert rest.json()["keys"] == keys[1:]


def test_enc_post_with_and_without_body(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b:
        default = a.post("/b/enc_keys")
        assert default.status_code == 200
        (key,) = default.json()["keys"]
        assert len(base64.b64decode(key["key"])) == 32
        sized = a.post(
            "/b/enc_keys",
            json={"number": 2, "size": 128, "extension_optional": [{"x": 1}], "unknown": True},
        )
        assert sized.status_code == 200, sized.text
        assert [len(base64.b64decode(k["key"])) for k in sized.json()["keys"]] == [16, 16]
        ids = [{"key_ID": k["key_ID"]} for k in [key, *sized.json()["keys"]]]
        assert b.post("/a/dec_keys", json={"key_IDs": ids}).status_code == 200


def test_exactly_once(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b:
        (key,) = enc(a, "b")
        assert b.get("/a/dec_keys", params={"key_ID": key["key_ID"]}).status_code == 200
        again = b.get("/a/dec_keys", params={"key_ID": key["key_ID"]})
        assert again.status_code == 400
        assert key["key_ID"] in again.json()["message"]


def test_dec_all_or_nothing(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b:
        (key,) = enc(a, "b")
        mixed = {"key_IDs": [{"key_ID": key["key_ID"]}, {"key_ID": str(uuid.uuid4())}]}
        assert b.post("/a/dec_keys", json=mixed).status_code == 400
        ok = b.get("/a/dec_keys", params={"key_ID": key["key_ID"]})
        assert ok.status_code == 200 and ok.json()["keys"] == [key]


def test_multicast_each_slave_gets_each_key_once(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b, km.client("c") as c:
        response = a.post("/b/enc_keys", json={"number": 2, "additional_slave_SAE_IDs": ["c"]})
        assert response.status_code == 200
        keys = response.json()["keys"]
        body = {"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
        for slave in (b, c):
            got = slave.post("/a/dec_keys", json=body)
            assert got.status_code == 200 and got.json()["keys"] == keys
            assert slave.post("/a/dec_keys", json=body).status_code == 400


def test_multicast_across_nodes_relays_the_same_keys(km: KmHarness) -> None:
    with km.client("a") as a, km.client("b") as b:
        response = a.post("/b/enc_keys", json={"number": 2, "additional_slave_SAE_IDs": ["d"]})
        assert response.status_code == 200, response.text
        keys = response.json()["keys"]
        ids = [k["key_ID"] for k in keys]
        assert (
            b.post("/a/dec_keys", json={"key_IDs": [{"key_ID": i} for i in ids]}).json()["keys"]
            == keys
        )
    at_n2 = km.peer_supplies["n2"].dec_keys("d", "a", ids)
    assert [base64.b64encode(k.material).decode() for k in at_n2] == [k["key"] for k in keys]
    assert km.relay.calls[-1][2] == "n2" and km.relay.calls[-1][5] is True


def test_remote_slave_goes_through_the_supplier(km: KmHarness) -> None:
    with km.client("a") as a:
        keys = enc(a, "d", number=2)
    got = km.peer_supplies["n2"].dec_keys("d", "a", [k["key_ID"] for k in keys])
    assert [base64.b64encode(k.material).decode() for k in got] == [k["key"] for k in keys]
    assert km.relay.calls[-1][:5] == ("a", ("d",), "n2", 2, 256)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("GET", "/b/enc_keys", {"params": {"size": 100}}, "size"),
        ("GET", "/b/enc_keys", {"params": {"size": 8}}, "size"),
        ("GET", "/b/enc_keys", {"params": {"size": 2048}}, "size"),
        ("GET", "/b/enc_keys", {"params": {"number": 0}}, "number"),
        ("GET", "/b/enc_keys", {"params": {"number": 129}}, "number"),
        ("GET", "/b/enc_keys", {"params": {"number": "many"}}, "number"),
        ("POST", "/b/enc_keys", {"json": {"extension_mandatory": [{"route": "x"}]}}, "route"),
        ("POST", "/b/enc_keys", {"json": {"number": "x"}}, "number"),
        ("POST", "/b/enc_keys", {"json": {"additional_slave_SAE_IDs": ["c"] * 17}}, "at most 16"),
        ("POST", "/b/enc_keys", {"content": b"{not json"}, "json"),
        ("POST", "/a/dec_keys", {"json": {"key_IDs": [{"key_ID": "not-a-uuid"}]}}, "key_ID"),
        ("POST", "/a/dec_keys", {"json": {"key_IDs": []}}, "key_IDs"),
        ("POST", "/a/dec_keys", {"json": {"keys": []}}, "key_IDs"),
        ("GET", "/a/dec_keys", {"params": {"key_ID": "123"}}, "key_ID"),
        ("GET", "/a/dec_keys", {}, "key_ID"),
        ("GET", "/nobody/enc_keys", {}, "nobody"),
        ("GET", "/nobody/status", {}, "nobody"),
        ("GET", "/a/enc_keys", {}, "master"),
    ],
)
def test_bad_requests_get_400_with_message(
    km: KmHarness, method: str, path: str, kwargs: dict[str, object], field: str
) -> None:
    before = len(km.stores["n1"])
    client = km.client("b" if "dec_keys" in path else "a")
    with client:
        if "content" in kwargs:
            kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
        response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    body = response.json()
    assert isinstance(body["message"], str) and body["message"]
    assert field.lower() in json.dumps(body).lower()
    assert len(km.stores["n1"]) == before


def test_unauthorized_callers_get_401(km: KmHarness) -> None:
    with km.client("stranger") as stranger:  # valid lab certificate, unknown SAE
        assert stranger.get("/b/enc_keys").status_code == 401
        assert stranger.get("/b/status").status_code == 401
    with km.client("d") as d:  # an SAE of another node
        assert d.get("/a/enc_keys").status_code == 401
    with km.client("a") as a, km.client("c") as c, km.client("b") as b:
        (key,) = enc(a, "b")
        not_for_c = c.get("/a/dec_keys", params={"key_ID": key["key_ID"]})
        assert not_for_c.status_code == 401 and "message" in not_for_c.json()
        wrong_master = b.get("/c/dec_keys", params={"key_ID": key["key_ID"]})
        assert wrong_master.status_code == 401
        assert b.get("/a/dec_keys", params={"key_ID": key["key_ID"]}).status_code == 200


def test_no_key_gives_503(tmp_path: Path, pki: LabPki) -> None:
    harness = KmHarness(tmp_path, pki, with_remote=False)
    try:
        with harness.client("a") as a:
            response = a.get("/d/enc_keys")
        assert response.status_code == 503
        assert "relay" in response.json()["message"]
    finally:
        harness.close()
    harness = KmHarness(tmp_path / "second", pki)
    del harness.relay.stores["n3"]  # no path toward n3
    try:
        with harness.client("a") as a:
            response = a.get("/e/enc_keys")
        assert response.status_code == 503 and "n3" in response.json()["message"]
    finally:
        harness.close()


def _tls_fails(url: str, context: ssl.SSLContext) -> bool:
    try:
        with httpx.Client(verify=context, timeout=10) as client:
            client.get(url + "/api/v1/keys/b/status")
    except httpx.TransportError:
        return True
    return False


def test_tls_refuses_no_cert_and_other_ca(km: KmHarness, tmp_path: Path) -> None:
    no_cert = ssl.create_default_context(cafile=str(km.pki.ca.cert))
    assert _tls_fails(km.url, no_cert)
    other = create_lab_pki(tmp_path / "other", ["n1"], ["a"])  # same names, other CA
    foreign = ssl.create_default_context(cafile=str(km.pki.ca.cert))
    foreign.load_cert_chain(str(other.saes["a"].cert), str(other.saes["a"].key))
    assert _tls_fails(km.url, foreign)
    # and the client refuses a KM whose certificate another CA signed
    wrong_server = client_tls_context(
        TlsFiles(km.pki.saes["a"].cert, km.pki.saes["a"].key, other.ca.cert)
    )
    assert _tls_fails(km.url, wrong_server)


def test_64_concurrent_clients_no_duplicates_no_mismatch(km: KmHarness) -> None:
    async def one(a: httpx.AsyncClient, b: httpx.AsyncClient) -> list[tuple[str, str, str]]:
        out = []
        for _ in range(2):
            got = await a.get("/b/enc_keys", params={"number": 2})
            assert got.status_code == 200
            keys = got.json()["keys"]
            ids = [{"key_ID": key["key_ID"]} for key in keys]
            back = await b.post("/a/dec_keys", json={"key_IDs": ids})
            assert back.status_code == 200
            for key, same in zip(keys, back.json()["keys"], strict=True):
                out.append((key["key_ID"], key["key"], same["key"]))
        return out

    async def main() -> list[tuple[str, str, str]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            km.async_client("a", limits=limits) as a,
            km.async_client("b", limits=limits) as b,
        ):
            results = await asyncio.gather(*(one(a, b) for _ in range(64)))
        return [row for rows in results for row in rows]

    rows = asyncio.run(main())
    assert len(rows) == 64 * 2 * 2
    assert len({key_id for key_id, _, _ in rows}) == len(rows)
    assert all(enc_key == dec_key for _, enc_key, dec_key in rows)


def test_key_material_never_logged(km: KmHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with km.client("a") as a, km.client("b") as b:
        keys = enc(a, "b", number=4)
        b.post("/a/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
        b.post("/a/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
    materials = [k["key"] for k in keys] + [base64.b64decode(k["key"]).hex() for k in keys]
    logged = caplog.text
    assert any("enc_keys" in r.getMessage() for r in caplog.records)
    assert not any(m in logged for m in materials)
    stored = km.supply.mint.keys("a", ["b"], 1, 256)[0]
    assert stored.material.hex() not in repr(stored)


def test_access_policy_refusals_are_counted(tmp_path: Path, pki: LabPki) -> None:
    policy = AccessPolicy.from_dict(
        {
            "saes": {
                "a": {"peers": ["b"], "max_key_size": 256, "max_keys_per_second": 0.01, "burst": 3},
                "b": {"peers": ["a"]},
                "c": {},
            }
        }
    )
    harness = KmHarness(tmp_path, pki, policy=policy)
    try:
        with harness.client("a") as a, harness.client("c") as c:
            not_permitted = a.get("/c/enc_keys")
            assert not_permitted.status_code == 401
            assert "may not" in not_permitted.json()["message"]
            assert a.get("/b/enc_keys", params={"size": 512}).status_code == 400
            assert a.get("/b/enc_keys", params={"number": 3}).status_code == 200
            limited = a.get("/b/enc_keys")
            assert limited.status_code == 503
            assert int(limited.headers["Retry-After"]) >= 1
            assert "rate" in limited.json()["message"]
            assert c.get("/b/enc_keys").status_code == 200  # c: "*" toward every SAE listed
            with harness.client("d") as d:
                assert d.get("/a/status").status_code == 401
            counters = a.get("/b/status").json()["status_extension"]["counters"]
        assert counters["refused_not_permitted"] == 1
        assert counters["refused_key_too_large"] == 1
        assert counters["refused_rate_exceeded"] == 1
    finally:
        harness.close()


def test_limits_come_from_settings(tmp_path: Path, pki: LabPki) -> None:
    harness = KmHarness(tmp_path, pki, limits=Etsi014Limits(max_key_per_request=2))
    try:
        with harness.client("a") as a:
            assert a.get("/b/status").json()["max_key_per_request"] == 2
            assert a.get("/b/enc_keys", params={"number": 3}).status_code == 400
    finally:
        harness.close()


def test_committed_openapi_matches_the_app(km: KmHarness) -> None:
    with km.client("a") as a:
        served = a.get(km.url + "/openapi.json").json()
    committed = json.loads((ROOT / "docs" / "openapi-etsi014.json").read_text())
    assert served == committed
    assert all("422" not in op["responses"] for p in served["paths"].values() for op in p.values())
    paths = set(served["paths"])
    assert paths == {
        "/api/v1/keys/{slave_SAE_ID}/status",
        "/api/v1/keys/{slave_SAE_ID}/enc_keys",
        "/api/v1/keys/{master_SAE_ID}/dec_keys",
    }
