"""SmartRedis's Python names over simctl's client (``import smartredis``
resolves here through simctl's import hook when no real SmartRedis is installed)."""

from __future__ import annotations

import os
from typing import Any

import simctl

from .error import (
    RedisConnectionError,
    RedisKeyError,
    RedisReplyError,
    RedisRuntimeError,
    RedisTimeoutError,
)

# the store's names load redis-py and numpy on first use (simctl's module __getattr__): typed Any here
_ClientBase: Any = simctl.Client
Dataset: Any = simctl.Dataset
LLQuiet, LLInfo, LLDebug, LLDeveloper = simctl.LLQuiet, simctl.LLInfo, simctl.LLDebug, simctl.LLDeveloper
log_data: Any = simctl.log_data


class ConfigOptions:
    """SmartRedis's ``ConfigOptions``: where a client connects, read from the
    environment (``SSDB``, or ``SSDB_<suffix>`` for ``create_from_environment(suffix)``)."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix
        self._overrides: dict[str, Any] = {}

    @classmethod
    def create_from_environment(cls, db_suffix: str) -> ConfigOptions:
        return cls(db_suffix)

    @classmethod
    def create_from_default(cls) -> ConfigOptions:
        return cls("")

    def _env(self, name: str) -> str:
        return f"{name}_{self.suffix}" if self.suffix else name

    def is_configured(self, option_name: str) -> bool:
        return option_name in self._overrides or self._env(option_name) in os.environ

    def get_string_option(self, option_name: str) -> str:
        if option_name in self._overrides:
            return str(self._overrides[option_name])
        try:
            return os.environ[self._env(option_name)]
        except KeyError:
            raise RedisKeyError(f"option {self._env(option_name)!r} is not set in the environment") from None

    def get_integer_option(self, option_name: str) -> int:
        return int(self.get_string_option(option_name))

    def override_string_option(self, option_name: str, value: str) -> None:
        self._overrides[option_name] = str(value)

    def override_integer_option(self, option_name: str, value: int) -> None:
        self._overrides[option_name] = int(value)


class Client(_ClientBase):
    """SmartRedis's ``Client(config_options=None, logger_name="Default")`` or
    ``Client(cluster, address=None, logger_name="Default")``: simctl's client;
    options made with ``create_from_environment(name)`` reach the store of that
    name with its own credentials (simctl's ``Client(db_identifier=name)``)."""

    def __init__(self, *args: Any, config_options: ConfigOptions | None = None, **kwargs: Any) -> None:
        if args and isinstance(args[0], ConfigOptions):
            config_options, args = args[0], args[1:]
        if config_options is not None and "address" not in kwargs:
            kwargs["address"] = config_options.get_string_option("SSDB")
        if config_options is not None and config_options.suffix and "password" not in kwargs:
            kwargs.setdefault("db_identifier", config_options.suffix)  # that store's own credentials
        super().__init__(*args, **kwargs)


__all__ = ["Client", "ConfigOptions", "Dataset", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet",
           "RedisConnectionError", "RedisKeyError", "RedisReplyError", "RedisRuntimeError", "RedisTimeoutError",
           "log_data"]
