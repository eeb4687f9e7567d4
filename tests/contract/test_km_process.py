"""The real `qkdsdn km run` process: ready line, kill -9 between enc and dec, SIGTERM."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from km.etsi014.server import TlsFiles, client_tls_context
from km.etsi014.testing import make_pki, make_plan, read_ready_line
from lab.pki import LabPki
from lab.plan import LabPlan

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
KM_RUN = (sys.executable, "-m", "lab.cli", "km", "run")


class KmProcess:
    def __init__(self, plan: Path, node: str, log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [*KM_RUN, "--plan", str(plan), "--node", node, "--log-level", "DEBUG"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.ready_line = self._wait_ready()
        self.url = next(p for p in self.ready_line.split() if p.startswith("etsi014="))[8:]

    def _wait_ready(self) -> str:
        line = read_ready_line(self.proc, START_TIMEOUT_S)
        if line is not None:
            return line
        self.kill()
        raise AssertionError("the KM did not print its ready line")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()

    def terminate(self) -> int:
        os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.log.close()
        return code


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Path, LabPki]:
    pki = make_pki(tmp_path)
    return make_plan(tmp_path, pki), pki


def client(url: str, pki: LabPki, sae: str) -> httpx.Client:
    paths = pki.saes[sae]
    return httpx.Client(
        base_url=url + "/api/v1/keys",
        verify=client_tls_context(TlsFiles(paths.cert, paths.key, pki.ca.cert)),
        timeout=20,
    )


def test_kill_9_between_enc_and_dec_loses_and_reissues_nothing(
    lab: tuple[Path, LabPki], tmp_path: Path
) -> None:
    plan, pki = lab
    log_path = tmp_path / "km-n1.log"
    km = KmProcess(plan, "n1", log_path)
    try:
        assert "km n1" in km.ready_line
        with client(km.url, pki, "a") as a, client(km.url, pki, "b") as b:
            keys = a.get("/b/enc_keys", params={"number": 10}).json()["keys"]
            first = b.post(
                "/a/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys[:5]]}
            )
            assert first.status_code == 200
    finally:
        km.kill()
    assert (tmp_path / "km" / "n1" / "keys.sqlite").exists()

    km = KmProcess(plan, "n1", log_path)
    try:
        with client(km.url, pki, "a") as a, client(km.url, pki, "b") as b:
            rest = b.post(
                "/a/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys[5:]]}
            )
            assert rest.status_code == 200, rest.text
            assert rest.json()["keys"] == keys[5:]
            for key in keys:  # every key went to b exactly once, across the crash
                again = b.get("/a/dec_keys", params={"key_ID": key["key_ID"]})
                assert again.status_code == 400
            fresh = a.get("/b/enc_keys", params={"number": 10}).json()["keys"]
            assert not {k["key_ID"] for k in fresh} & {k["key_ID"] for k in keys}
        assert km.terminate() == 0
    finally:
        km.kill()
    logged = log_path.read_text()
    assert "key manager n1 stopped" in logged
    assert "enc_keys a -> ['b']" in logged  # DEBUG lines were written ...
    for key in keys + fresh:  # ... and none carries key material
        assert key["key"] not in logged
        assert base64.b64decode(key["key"]).hex() not in logged


def test_bad_plan_or_node_is_a_clear_error(lab: tuple[Path, LabPki]) -> None:
    plan, _ = lab
    result = subprocess.run(
        [*KM_RUN, "--plan", str(plan), "--node", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no node 'nope'" in result.stderr


def test_busy_port_is_a_clear_error(lab: tuple[Path, LabPki]) -> None:
    plan_path, _ = lab
    port = LabPlan.load(plan_path).node("n1").km_etsi014_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [*KM_RUN, "--plan", str(plan_path), "--node", "n1"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "in use" in result.stderr and "Traceback" not in result.stderr
