"""``[nats]`` over TLS: the service and the client verify the server against the CA they
are given, and a client without it cannot connect."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ult_actors.client import Client, ServiceUnreachable
from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate for 127.0.0.1 signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificates for the TLS test")
    d = tmp_path_factory.mktemp("pki")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=ult test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "san.ext", cwd=d)  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_server(start_nats: Callable[[str], NatsServer], pki: Path) -> NatsServer:
    return start_nats(
        f'tls {{ cert_file: "{pki / "server.pem"}", key_file: "{pki / "server.key"}" }}\n'
    )


@pytest.fixture(scope="module")
def service(tls_server: NatsServer, pki: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[UltProcess]:  # fmt: skip
    url = tls_server.url.replace("nats://", "tls://")
    config = tmp_path_factory.mktemp("cfg") / "ult.toml"
    config.write_text(f'[nats]\nurl = "{url}"\ntls_ca = "{pki / "ca.pem"}"\n')
    svc = UltProcess.serve(args=["--config", str(config)]).start()
    yield svc
    svc.stop()
    svc.cleanup()


def test_the_service_and_a_client_talk_over_tls(
    service: UltProcess, tls_server: NatsServer, pki: Path
) -> None:
    url = tls_server.url.replace("nats://", "tls://")
    with Client(url=url, tls_ca=pki / "ca.pem", timeout=20) as c:
        order = c.submit("AAPL", "buy", 1, client_order_id="tls-1")
        assert c.order("tls-1").id == order.id
    # Without the CA the server's certificate is not trusted: no connection at all.
    with pytest.raises(ServiceUnreachable):
        Client(url=url, timeout=5).connect()
