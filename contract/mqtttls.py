"""TLS to the broker, alike in every deployable: which CA to trust, an optional client
certificate, and TLS failures in words an operator can act on.

Every client (edge agent, ingester, replay, the API's followers, ``pantau broker``) reads the
same three settings (:class:`MqttTlsSettings`: ``PANTAU_MQTT_CA_FILE``,
``PANTAU_MQTT_CERT_FILE``, ``PANTAU_MQTT_KEY_FILE``) and hands its paho client to
:func:`configure_tls`. contract/ does not import paho; :class:`TlsClient` is the one method of
paho's client used here.

Why a CA file rather than the system store: the broker's certificate is made by ``pantau
broker certs`` with a CA of the deployment's own (docs/adr/0019-broker-tls.md). With
``PANTAU_MQTT_CA_FILE`` set, only that CA is trusted; unset, the system's CAs are (a broker
with a certificate from a public CA).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol, Self

from pydantic import BaseModel, model_validator

from contract.errors import ConfigError

__all__ = ["MqttTlsSettings", "TlsClient", "configure_tls", "tls_context", "tls_failure_words"]


class TlsClient(Protocol):
    """The part of paho's ``Client`` :func:`configure_tls` uses."""

    def tls_set_context(self, context: ssl.SSLContext | None = None) -> None: ...


class MqttTlsSettings(BaseModel):
    """The TLS settings every broker client has; mixed into each deployable's settings class
    (``class EdgeSettings(MqttTlsSettings, BaseSettings)``). Used only for ``mqtts://``."""

    #: PEM file of the CA that signed the broker's certificate (``pantau broker certs`` writes
    #: ``ca.crt``). Unset: the system's trusted CAs.
    mqtt_ca_file: Path | None = None
    #: PEM client certificate and its key, for a broker listener that asks for one (optional
    #: client-certificate identity, docs/operations.md "TLS"). Both or neither.
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError(
                "PANTAU_MQTT_CERT_FILE and PANTAU_MQTT_KEY_FILE go together: set both or neither"
            )
        return self

    def mqtt_tls_context(self) -> ssl.SSLContext:
        """The client TLS context these settings describe (see :func:`tls_context`)."""
        return tls_context(
            ca_file=self.mqtt_ca_file, cert_file=self.mqtt_cert_file, key_file=self.mqtt_key_file
        )


def tls_context(
    *, ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate and host name against
    ``ca_file`` (or the system's CAs) and presents ``cert_file``/``key_file`` if given.

    Raises :class:`ConfigError` naming the file that cannot be read or parsed: a missing CA
    file is a deployment mistake to report at start-up, not a TLS failure on every connect."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:  # FileNotFoundError, or not a PEM CA
        raise ConfigError(f"PANTAU_MQTT_CA_FILE {ca_file}: {_why(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"PANTAU_MQTT_CERT_FILE {cert_file} / PANTAU_MQTT_KEY_FILE {key_file}: {_why(exc)}"
            ) from None
    return context


def configure_tls(client: TlsClient, settings: MqttTlsSettings) -> None:
    """Switch ``client`` to TLS with ``settings``' CA and client certificate. Call it for an
    ``mqtts://`` URL, before ``connect``."""
    client.tls_set_context(settings.mqtt_tls_context())


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return exc.strerror or str(exc)


# OpenSSL's X509_V_ERR_* codes (openssl/x509_vfy.h) that have a plain-words explanation.
_NOT_YET_VALID = 9
_EXPIRED = 10
_SELF_SIGNED = 18
_SELF_SIGNED_IN_CHAIN = 19
_NO_ISSUER = 20
_LEAF_NOT_SIGNED = 21
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64

_VERIFY_WORDS = {
    _EXPIRED: "the broker's certificate has expired",
    _NOT_YET_VALID: "the broker's certificate is not valid yet (is this machine's clock right?)",
    _SELF_SIGNED: "certificate not signed by the configured CA (PANTAU_MQTT_CA_FILE)",
    _SELF_SIGNED_IN_CHAIN: "certificate not signed by the configured CA (PANTAU_MQTT_CA_FILE)",
    _NO_ISSUER: "certificate not signed by the configured CA (PANTAU_MQTT_CA_FILE)",
    _LEAF_NOT_SIGNED: "certificate not signed by the configured CA (PANTAU_MQTT_CA_FILE)",
    _HOSTNAME_MISMATCH: "the broker's certificate does not name the host in PANTAU_MQTT_URL",
    _IP_MISMATCH: "the broker's certificate does not name the address in PANTAU_MQTT_URL",
}


def tls_failure_words(exc: ssl.SSLError) -> str:
    """A failed TLS handshake as ``"TLS: <what is wrong>"`` for logs and the edge's status, e.g.
    ``"TLS: the broker's certificate has expired"``; OpenSSL's own words when there are no
    plainer ones (``"TLS: tlsv13 alert certificate required"``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        words = _VERIFY_WORDS.get(exc.verify_code, exc.verify_message or "verification failed")
        return f"TLS: {words}"
    return f"TLS: {_why(exc)}"
