"""The one secret policy of every deployable (edge agent, ingester, API), and the rules that
keep secrets out of errors, logs and responses.

Why here: ``contract`` is the one package the edge, the ingester and the API all import, and it
imports none of them (the edge must never import ``cloud``). The policy needs nothing beyond
the standard library and pydantic's :class:`~pydantic.SecretStr`, which is exactly what
``contract`` may use, so a gateway image carries the same rules as the cloud.

The policy (``PANTAU_MODE=production`` only; development keeps its convenient defaults):

- a secret is refused when it is missing or empty, shorter than :data:`MIN_SECRET_LENGTH`
  characters, one of :data:`WELL_KNOWN_SECRETS` (shipped defaults, development passwords,
  dictionary favourites), or equal to the account's username or the device's id;
- every comparison is on the *normalised* secret (:func:`normalise`: case folded, all
  whitespace removed), so ``Changeme``, ``changeme `` and ``change me`` are one default;
- refusals name the setting and the rule, never the value.

Secrets reach a process in one of two ways, and only these: the variable itself
(``PANTAU_INFLUX_PASSWORD``), or the same name with ``_FILE`` naming a file that holds it
(``PANTAU_INFLUX_PASSWORD_FILE=/run/secrets/influx_password``, what compose ``secrets:``
mount). :func:`secret_file_values` reads the second for a settings class, and
:class:`SecretFileSettings` makes every deployable's settings read it alike; a process given
both is refused (which one wins would be a guess).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from contract.errors import ConfigError

__all__ = [
    "DEV_INGEST_MQTT_PASSWORD",
    "ECHO_MAX_CHARS",
    "FILE_SUFFIX",
    "MIN_SECRET_LENGTH",
    "WELL_KNOWN_SECRETS",
    "SecretFileSettings",
    "SecretProblem",
    "bounded_echo",
    "describe_settings_error",
    "normalise",
    "redact_url",
    "refuse_url_credentials",
    "require_secret",
    "secret_file_values",
    "secret_problem",
    "settings_or_config_error",
]

_T = TypeVar("_T")

#: Shortest acceptable production secret. ``pantau broker passwd`` makes 24 characters.
MIN_SECRET_LENGTH = 16

#: Passwords of the development accounts: the test broker, ``pantau demo`` and the ingester's
#: default use these, so they are public by construction.
DEV_INGEST_MQTT_PASSWORD = "pantau-ingest-secret"  # noqa: S105 - a public development default
DEV_REPLAY_MQTT_PASSWORD = "pantau-replay-secret"  # noqa: S105 - a public development default

_DEV_SECRETS = (
    DEV_INGEST_MQTT_PASSWORD,
    DEV_REPLAY_MQTT_PASSWORD,
    "pantau-api-secret",
    "pantau-ops-secret",
)
#: Values that ship in examples, fixtures and every attacker's first list. Stored normalised.
_COMMON = (
    "",
    "changeme",
    "change-me",
    "change_me",
    "changeit",
    "password",
    "passw0rd",
    "password1",
    "secret",
    "pantau",
    "admin",
    "administrator",
    "root",
    "toor",
    "default",
    "guest",
    "test",
    "1",
    "1234",
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
    "letmein",
    "welcome",
    "influx",
    "influxdb",
    "mosquitto",
    "mqtt",
    "grafana",
    "pantau-secret",
    "supersecretpassword",
    "changemechangeme",
    "pleasechangeme",
    "passwordpassword",
)


def normalise(value: str) -> str:
    """The form secrets are compared in: case folded, every whitespace character removed."""
    return "".join(value.split()).casefold()


WELL_KNOWN_SECRETS = frozenset(normalise(s) for s in (*_COMMON, *_DEV_SECRETS))


class SecretProblem(StrEnum):
    """Why a production secret is refused. The values read as the end of a sentence."""

    MISSING = "is missing or empty"
    SHORT = f"is shorter than {MIN_SECRET_LENGTH} characters"
    WELL_KNOWN = "is a well-known or default value"
    IS_IDENTITY = "equals its username or id"


def secret_problem(
    secret: SecretStr | str | None, *, identities: Iterable[str | None] = ()
) -> SecretProblem | None:
    """What is wrong with ``secret`` as a production secret, or None if nothing.

    ``identities`` are the account's username, the device's id and the like; a secret equal
    to one of them (compared normalised) is refused."""
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else (secret or "")
    value = normalise(raw)
    if not value:
        return SecretProblem.MISSING
    if value in WELL_KNOWN_SECRETS:
        return SecretProblem.WELL_KNOWN
    if value in {normalise(i) for i in identities if i}:
        return SecretProblem.IS_IDENTITY
    if len(raw.strip()) < MIN_SECRET_LENGTH:
        return SecretProblem.SHORT
    return None


def require_secret(
    secret: SecretStr | str | None, *, setting: str, identities: Iterable[str | None] = ()
) -> None:
    """Raise ``ValueError`` naming ``setting`` (e.g. ``PANTAU_MQTT_PASSWORD``) and the rule it
    breaks, never the value, if ``secret`` fails :func:`secret_problem`. Meant for a settings
    class's production validator, so pydantic reports it as a settings error."""
    problem = secret_problem(secret, identities=identities)
    if problem is not None:
        raise ValueError(f"production mode: {setting} {problem.value}; refusing to start")


#: Greedy up to the last ``@`` before whitespace: a password may hold an unescaped ``@``, and
#: ``#``, ``/`` or ``?`` too (where ``urlsplit`` would end the authority and leave the rest of
#: the password in the path or fragment). Too much redacted is harmless; too little is a leak.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s]*@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it (``scheme://user:pass@``) replaced by
    ``***@``, so a URL can be logged or shown."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


def refuse_url_credentials(url: str, *, setting: str) -> None:
    """Raise ``ValueError`` if ``url`` holds ``user:pass@``: a URL is logged and shown freely,
    so credentials belong in their own (secret) setting. Any ``@`` in what :func:`redact_url`
    would mask counts: ``urlsplit`` misses a password holding ``#``, ``/`` or ``?``."""
    if _URL_USERINFO.search(url) is not None:
        raise ValueError(
            f"{setting} must not hold credentials ({redact_url(url)!r}); set the username and"
            " password settings instead"
        )


#: How much of a refused input a client error may quote back.
ECHO_MAX_CHARS = 64


def bounded_echo(value: Any, *, limit: int = ECHO_MAX_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (saying how long it was), for error messages
    that quote a client's input back to it without echoing a whole oversized request."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({size} characters)"


def describe_settings_error(exc: ValueError, *, what: str, source: str) -> str:
    """One line for settings that failed to load: for a pydantic ``ValidationError``, each
    problem as its field, the environment variable that sets it and pydantic's message; for
    anything else (pydantic-settings' unparsable-JSON ``SettingsError``), its message. Never
    the input: it may be a secret.

    ``what`` names the settings (``ingest settings``), ``source`` where they came from
    (``environment``, ``environment and edge.yaml``)."""
    if not isinstance(exc, ValidationError):
        return f"invalid {what} ({source}): {redact_url(' '.join(str(exc).split()))}"
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc)
        env = f" (PANTAU_{loc[0].upper()})" if loc else ""
        # Messages of our own validators never carry a value; pydantic's built-in ones do not
        # either (the input is a separate key, dropped above). URLs in them lose credentials.
        message = redact_url(" ".join(str(err["msg"]).removeprefix("Value error, ").split()))
        problems.append(f"{field}{env}: {message}" if field else message)
    return f"invalid {what} ({source}): " + "; ".join(problems)


def settings_or_config_error(
    factory: Callable[[], _T], *, what: str, source: str = "environment"
) -> _T:
    """``factory()`` (a settings class reading ``PANTAU_*``), with any validation failure turned
    into a :class:`ConfigError` whose message is :func:`describe_settings_error`'s one line."""
    try:
        return factory()
    except ValueError as exc:  # pydantic's ValidationError, pydantic-settings' SettingsError
        raise ConfigError(describe_settings_error(exc, what=what, source=source)) from None


#: Suffix of the variable that names a file holding a secret setting.
FILE_SUFFIX = "_FILE"


def _is_secret(annotation: object) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def secret_file_values(
    model: type[BaseModel], *, prefix: str = "PANTAU_", environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Field name -> secret read from the file that ``<PREFIX><FIELD>_FILE`` names, for every
    :class:`~pydantic.SecretStr` field of ``model`` whose ``_FILE`` variable is set. One
    trailing line end is dropped (editors add one). Raises ``ValueError`` naming the variable
    (never the content) when the file cannot be read, or when the plain variable is set too."""
    env = os.environ if environ is None else environ
    upper = {k.upper(): v for k, v in env.items()}
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        if not _is_secret(info.annotation):
            continue
        plain = f"{prefix}{name}".upper()
        path = upper.get(plain + FILE_SUFFIX)
        if path is None:
            continue
        if plain in upper:
            raise ValueError(f"set {plain} or {plain}{FILE_SUFFIX}, not both")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"{plain}{FILE_SUFFIX}: cannot read {path!r}: {reason}") from None
        out[name] = text.removesuffix("\n").removesuffix("\r")
    return out


class SecretFileSettings(BaseSettings):
    """Base of every deployable's settings: a secret may also come from the file that
    ``PANTAU_<NAME>_FILE`` names (:func:`secret_file_values`). The environment wins over those
    files, which win over :meth:`lower_sources` (e.g. the edge's YAML file) and the defaults."""

    @classmethod
    def lower_sources(
        cls, settings_cls: type[BaseSettings]
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Sources below the secret files and above the defaults; none unless overridden."""
        return ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = InitSettingsSource(settings_cls, init_kwargs=secret_file_values(settings_cls))
        return (
            init_settings,
            env_settings,
            files,
            dotenv_settings,
            *cls.lower_sources(settings_cls),
            file_secret_settings,
        )
