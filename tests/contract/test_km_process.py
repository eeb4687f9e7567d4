"""The real `qkdsdn km run` process: ready line, kill -9 between enc and dec, SIGTERM."""

from __future__ import annotations

import base64
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from km.etsi014.server import TlsFiles, client_tls_context
from lab.configs import write_process_configs
from lab.pki import LabPki
from lab.plan import LabPlan
from tests.harness.etsi014 import make_pki, make_plan, read_ready_line

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
KM_RUN = (sys.executable, "-m", "lab.cli", "km", "run")


class KmProcess:
    def __init__(self, config: Path, log_path: Path) -> None:
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [*KM_RUN, "--config", str(config), "--log-level", "DEBUG"],
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
    """The configuration file of KM n1 (no links) and the PKI."""
    pki = make_pki(tmp_path)
    files = write_process_configs(LabPlan.load(make_plan(tmp_path, pki)))
    return files["km-n1"], pki


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
    config, pki = lab
    log_path = tmp_path / "km-n1.log"
    km = KmProcess(config, log_path)
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

    km = KmProcess(config, log_path)
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


def test_every_bad_field_is_named_before_anything_listens(lab: tuple[Path, LabPki]) -> None:
    config, _ = lab
    data = yaml.safe_load(config.read_text())
    data["listen"]["relay"] = "[::1:7000"
    data["tls"]["ca"] = "../pki/missing-ca.pem"
    data["settings"]["relay_mode"] = "rot13"
    config.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [*KM_RUN, "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    for field in ("listen.relay:", "tls.ca: no such file", "settings.relay_mode: 'rot13'"):
        assert f"{config}: {field}" in result.stderr
    assert "Traceback" not in result.stderr


def ready_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    """The first `count` ready lines of the process (unbuffered reads, with a deadline)."""
    assert proc.stdout is not None
    fd, text = proc.stdout.fileno(), ""
    deadline = time.monotonic() + timeout
    while True:
        ready = [line for line in text.splitlines() if line.startswith("ready")]
        if len(ready) >= count:
            return ready[:count]
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], (
            f"no {count} ready lines: {text!r}"
        )
        chunk = os.read(fd, 4096).decode()
        assert chunk, f"the process ended: {text!r}"
        text += chunk


def test_one_process_hosts_several_key_managers(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    files = write_process_configs(LabPlan.load(make_plan(tmp_path, pki)))
    proc = subprocess.Popen(
        [*KM_RUN, "--config", str(files["km-n1"]), "--config", str(files["km-n2"])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = ready_lines(proc, 2, START_TIMEOUT_S)
        assert sorted(line.split()[2] for line in ready) == ["n1", "n2"]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert (tmp_path / "km" / "n1" / "keys.sqlite").exists()
    assert (tmp_path / "km" / "n2" / "keys.sqlite").exists()


def test_busy_port_is_a_clear_error(lab: tuple[Path, LabPki]) -> None:
    config, _ = lab
    port = LabPlan.load(config.parent.parent / "plan.json").node("n1").km_etsi014_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [*KM_RUN, "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert "in use" in result.stderr and "Traceback" not in result.stderr
