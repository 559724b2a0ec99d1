"""``pantau broker certs``: the deployment's own CA, the broker's server certificate and
optional client certificates per device (docs/adr/0019-broker-tls.md).

Layout of the certs folder (production: ``mosquitto/certs``, mounted with ``mosquitto/`` at
``/mosquitto/config/certs``)::

    ca.crt  ca.key            the CA: ca.crt goes to every client (PANTAU_MQTT_CA_FILE);
                              ca.key stays with the operator and signs renewals
    server.crt  server.key    the broker's listener on 8883 (SAN: every --host)
    clients/<id>.crt  .key    a device's client certificate (CN = its id), optional

Keys are written mode 0600. Nothing is overwritten without ``--force``, and the CA is reused
when it exists, so renewing the server certificate (``--host ... --force``) keeps every
gateway's ca.crt valid. Keys are ECDSA P-256: small and fast on a Raspberry-Pi-class gateway,
and supported by Mosquitto's OpenSSL and Python's ``ssl``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contract.topics import is_valid_id

#: The organisation every certificate names.
ORGANISATION = "Pantau"
CA_DAYS = 10 * 365
#: 825 days: the longest validity TLS clients commonly accept for a server certificate.
SERVER_DAYS = 825
CLIENT_DAYS = 825


class CertsError(ValueError):
    """A certificate cannot be made as asked (a file exists, a bad host name)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Validity:
    """When a certificate is valid: from ``start`` for ``days`` days."""

    start: datetime
    days: int

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True, slots=True)
class Signer:
    """A CA certificate and its key, to sign others with."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, valid: Validity
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid.start)
        .not_valid_after(valid.end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(common_name: str, valid: Validity) -> Signer:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = _new_key()
    cert = (
        _builder(_name(common_name), key, valid)
        .issuer_name(_name(common_name))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Signer(cert, key)


def _leaf(
    ca: Signer,
    common_name: str,
    valid: Validity,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    builder = (
        _builder(_name(common_name), key, valid)
        .issuer_name(ca.cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def host_names(hosts: list[str]) -> list[x509.GeneralName]:
    """``hosts`` as subject alternative names: IP addresses as such, the rest as DNS names."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c.isspace() or c in "/:@" for c in host):
                raise CertsError(f"not a host name or IP address: {host!r}") from None
            names.append(x509.DNSName(host))
    return names


def make_server_cert(
    ca: Signer, hosts: list[str], valid: Validity
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The broker's certificate for ``hosts`` (DNS names and IPs, the first is its CN)."""
    if not hosts:
        raise CertsError("a server certificate needs at least one --host")
    return _leaf(ca, hosts[0], valid, ExtendedKeyUsageOID.SERVER_AUTH, host_names(hosts))


def make_client_cert(
    ca: Signer, device: str, valid: Validity
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate whose CN is ``device`` (the broker's username with
    ``use_identity_as_username``)."""
    if not is_valid_id(device):
        raise CertsError(f"not a device or account id: {device!r}")
    return _leaf(ca, device, valid, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (0600), whatever the umask, and never leave
    it readable for a moment: the file is created 0600, not chmod-ed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def write_pair(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Path:
    """``<stem>.crt`` (0644) and ``<stem>.key`` (0600) in ``folder``; returns the cert path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / f"{stem}.key", _pem_key(key))
    crt = folder / f"{stem}.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    crt.chmod(0o644)
    return crt


def load_ca(folder: Path) -> Signer | None:
    """The CA in ``folder`` (``ca.crt`` + ``ca.key``), or None if there is none."""
    crt, key_file = folder / "ca.crt", folder / "ca.key"
    if not crt.exists() and not key_file.exists():
        return None
    if not (crt.exists() and key_file.exists()):
        raise CertsError(f"{folder} holds only one of ca.crt and ca.key")
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{key_file} is not an ECDSA key made by pantau broker certs")
    return Signer(x509.load_pem_x509_certificate(crt.read_bytes()), key)


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CertsError(f"{', '.join(existing)} exist(s); use --force to replace")


def make_certs(
    folder: Path,
    *,
    hosts: list[str],
    clients: list[str],
    valid: Validity,
    force: bool = False,
    new_ca: bool = False,
) -> list[Path]:
    """Make (or reuse) the CA in ``folder``, a server certificate for ``hosts`` if any, and a
    client certificate per id in ``clients``. Returns the files written. Nothing is written
    when any certificate asked for exists and ``force`` is False."""
    server = [folder / "server.crt", folder / "server.key"] if hosts else []
    client_files = [folder / "clients" / f"{c}.{ext}" for c in clients for ext in ("crt", "key")]
    _refuse_existing(server + client_files, force)
    if new_ca:
        _refuse_existing([folder / "ca.crt", folder / "ca.key"], force)
    ca = None if new_ca else load_ca(folder)
    written: list[Path] = []
    if ca is None:
        ca_valid = Validity(start=valid.start, days=max(CA_DAYS, valid.days))
        ca = make_ca(f"{ORGANISATION} MQTT CA", ca_valid)
        written.append(write_pair(folder, "ca", ca.cert, ca.key))
    if hosts:
        written.append(write_pair(folder, "server", *make_server_cert(ca, hosts, valid)))
    for device in clients:
        cert, key = make_client_cert(ca, device, valid)
        written.append(write_pair(folder / "clients", device, cert, key))
    return written


def certs_command(
    folder: Annotated[Path, typer.Argument(help="where the certificates go, e.g. mosquitto/certs")],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="the broker's DNS name or IP, as clients dial it (repeat)"),
    ] = None,
    client: Annotated[
        list[str] | None,
        typer.Option("--client", help="a device or account id to make a client cert for (repeat)"),
    ] = None,
    days: Annotated[
        int, typer.Option(min=1, help="validity of the new certificates")
    ] = SERVER_DAYS,
    valid_from: Annotated[
        str | None,
        typer.Option(help="first valid day, YYYY-MM-DD (default: now)", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option(help="replace certificates that exist")] = False,
    new_ca: Annotated[
        bool, typer.Option(help="make a new CA (every client then needs the new ca.crt)")
    ] = False,
) -> None:
    """Make the broker's TLS certificates: the CA (reused when it exists), the server
    certificate for every --host, and a client certificate per --client. Keys are 0600."""
    try:
        start = (
            datetime.combine(date.fromisoformat(valid_from), time(), tzinfo=UTC)
            if valid_from
            else datetime.now(UTC) - timedelta(minutes=5)  # a little clock skew
        )
    except ValueError:
        typer.echo(f"--valid-from must be YYYY-MM-DD, not {valid_from!r}", err=True)
        raise typer.Exit(2) from None
    if not host and not client and not new_ca and load_ca(folder) is not None:
        typer.echo("nothing to do: give --host and/or --client (the CA exists)", err=True)
        raise typer.Exit(2)
    try:
        written = make_certs(
            folder,
            hosts=host or [],
            clients=client or [],
            valid=Validity(start=start, days=days),
            force=force,
            new_ca=new_ca,
        )
    except CertsError as exc:
        typer.echo(f"pantau broker certs: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path} (key {path.with_suffix('.key').name}, mode 0600)")
