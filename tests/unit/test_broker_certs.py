"""``pantau broker certs``: a CA, a server certificate for the named hosts and client
certificates per device; keys 0600; nothing replaced without --force; the CA reused so a
renewed server certificate is trusted by every gateway that holds ca.crt."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from pantau.cli import app
from pantau.paths import MOSQUITTO_DIR
from pantau.services import Mosquitto


def _certs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["broker", "certs", *args])
    return result.exit_code, result.output


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_certs_makes_a_ca_a_server_cert_with_sans_and_client_certs_with_private_keys(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "certs"
    code, out = _certs(
        str(folder),
        "--host",
        "broker.pantau.example",
        "--host",
        "10.0.0.5",
        "--client",
        "gw-kariadi",
    )
    assert code == 0, out
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "ca.crt",
        "ca.key",
        "clients/gw-kariadi.crt",
        "clients/gw-kariadi.key",
        "server.crt",
        "server.key",
    ]
    assert {name: _mode(folder / name) for name in files} == {
        "ca.crt": 0o644,
        "ca.key": 0o600,
        "clients/gw-kariadi.crt": 0o644,
        "clients/gw-kariadi.key": 0o600,
        "server.crt": 0o644,
        "server.key": 0o600,
    }
    server = _load(folder / "server.crt")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["broker.pantau.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    client = _load(folder / "clients" / "gw-kariadi.crt")
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-kariadi"
    # Both chain to the CA, as Python's own TLS stack checks it.
    context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
    assert len(context.get_ca_certs()) == 1
    ca = _load(folder / "ca.crt")
    for cert in (server, client):
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days == 825


def test_nothing_is_replaced_without_force_and_renewal_keeps_the_ca(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    assert _certs(str(folder), "--host", "broker")[0] == 0
    ca_before = (folder / "ca.crt").read_bytes()
    server_before = (folder / "server.crt").read_bytes()
    code, out = _certs(str(folder), "--host", "broker")
    assert code == 2
    assert f"{folder / 'server.crt'}, {folder / 'server.key'} exist(s); use --force" in out
    assert (folder / "server.crt").read_bytes() == server_before
    assert _certs(str(folder), "--host", "broker", "--force")[0] == 0
    assert (folder / "server.crt").read_bytes() != server_before
    assert (folder / "ca.crt").read_bytes() == ca_before  # gateways keep trusting the broker
    _load(folder / "server.crt").verify_directly_issued_by(_load(folder / "ca.crt"))
    code, out = _certs(str(folder), "--new-ca")
    assert code == 2
    assert "ca.crt" in out
    assert (folder / "ca.crt").read_bytes() == ca_before


def test_validity_is_settable_down_to_an_already_expired_certificate(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    code, out = _certs(
        str(folder), "--host", "broker", "--valid-from", "2020-01-01", "--days", "30"
    )
    assert code == 0, out
    server = _load(folder / "server.crt")
    assert server.not_valid_before_utc == datetime(2020, 1, 1, tzinfo=UTC)
    assert server.not_valid_after_utc == datetime(2020, 1, 31, tzinfo=UTC)
    assert _certs(str(folder), "--client", "gw x")[0] == 2
    assert _certs(str(tmp_path / "other"), "--host", "b", "--valid-from", "1.1.2020")[0] == 2


def _listener_options(text: str, port: int) -> dict[str, str]:
    """The options of ``listener <port>`` in a mosquitto config (commented-out lines count),
    up to the next listener or global option."""
    lines = [line.strip().lstrip("#").strip() for line in text.splitlines()]
    start = lines.index(f"listener {port}") if f"listener {port}" in lines else None
    assert start is not None, f"no listener {port}"
    options: dict[str, str] = {}
    for line in lines[start + 1 :]:
        key, _, value = line.partition(" ")
        if key not in {
            "cafile",
            "certfile",
            "keyfile",
            "require_certificate",
            "use_identity_as_username",
        }:
            break
        options[key] = value
    return options


def test_the_production_tls_listeners_are_the_ones_the_tests_run(tmp_path: Path) -> None:
    """mosquitto/mosquitto.conf's 8883 (and optional 8884) listeners use the files `pantau
    broker certs` writes, with the very options the test broker's TLS listeners have."""
    prod = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    test_broker = Mosquitto(workdir=tmp_path, tls_dir=Path("/mosquitto/config/certs"))
    test_broker.tls_port, test_broker.cert_port = 8883, 8884
    tested = test_broker.tls_listeners().replace(f" {test_broker.host}", "")
    for port in (8883, 8884):
        assert _listener_options(prod, port) == _listener_options(tested, port)
    assert _listener_options(prod, 8883) == {
        "cafile": "/mosquitto/config/certs/ca.crt",
        "certfile": "/mosquitto/config/certs/server.crt",
        "keyfile": "/mosquitto/config/certs/server.key",
    }
