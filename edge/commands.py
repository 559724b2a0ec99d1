"""Commands from ops on ``.../cmd``: parsed, applied, and answered with a ``CommandAck``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contract.errors import ConfigError, ContractError, RejectReason
from contract.payload import Command, CommandAck, CommandName, check_version, load_json
from edge.config import EdgeSettings, load_settings

log = logging.getLogger(__name__)

#: Settings a reload_config applies at once; any other change waits for a restart.
RUNTIME_FIELDS = ("batch_max_readings", "batch_max_delay_s", "status_interval_s")


class CommandError(ContractError):
    """A command whose arguments cannot be applied; becomes an error ack."""

    def __init__(self, detail: str) -> None:
        super().__init__(RejectReason.SCHEMA_VIOLATION, detail)


class Commands:
    """Applies commands to the agent through the callbacks it hands in (publisher loop only)."""

    def __init__(
        self,
        *,
        config_file: Path | None,
        settings: Callable[[], EdgeSettings],
        apply: Callable[[dict[str, Any]], None],
        flush: Callable[[], int],
        spool_state: Callable[[], dict[str, Any]],
    ) -> None:
        self._config_file = config_file
        self._settings = settings
        self._apply = apply
        self._flush = flush
        self._spool_state = spool_state

    def handle(self, payload: bytes) -> CommandAck:
        """The answer to one command payload (an error ack for anything unusable)."""
        cmd_id = "unknown"
        try:
            doc = load_json(payload)
            if isinstance(doc, dict) and isinstance(doc.get("id"), str):
                cmd_id = doc["id"]
            check_version(doc)
            command = Command.model_validate(doc)
            result = self._execute(command)
            ack = CommandAck(id=command.id, ok=True, result=result)
        except ContractError as exc:
            ack = CommandAck(id=cmd_id, ok=False, error=str(exc))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            ack = CommandAck(id=cmd_id, ok=False, error=f"{where}: {first['msg']}")
        log.info("command %s -> ok=%s %s", ack.id, ack.ok, ack.error or "")
        return ack

    def _execute(self, command: Command) -> dict[str, Any]:
        if command.name is CommandName.SET_INTERVAL:
            return self._set_interval(command.args)
        if command.name is CommandName.READ_NOW:
            return {"flushed": self._flush()}
        if command.name is CommandName.RELOAD_CONFIG:
            return self._reload()
        return self._spool_state()  # SPOOL_STATE

    def _set_interval(self, args: dict[str, Any]) -> dict[str, Any]:
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise CommandError("set_interval needs args.seconds (a number)")
        if not 0 < seconds <= 3600:
            raise CommandError("set_interval seconds must be in (0, 3600]")
        self._apply({"batch_max_delay_s": float(seconds)})
        return {"batch_max_delay_s": float(seconds)}

    def _reload(self) -> dict[str, Any]:
        try:
            fresh = load_settings(self._config_file)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        current = self._settings()
        applied = {f: getattr(fresh, f) for f in RUNTIME_FIELDS}
        restart = sorted(
            name
            for name in type(fresh).model_fields
            if name not in RUNTIME_FIELDS and getattr(fresh, name) != getattr(current, name)
        )
        self._apply(applied)
        return {"applied": applied, "restart_required": restart}
