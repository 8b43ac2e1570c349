"""simctl's feature store client: tensors, datasets and aggregation lists in
Redis (a single server or a Redis Cluster).

    from simctl import Client
    client = Client()                  # the store the launcher named in SSDB
    client.put_tensor("t", array)
    client.get_tensor("t")

The on-Redis format is documented in :mod:`simctl.store.format`.
"""

from typing import Any

# imported on first use: a shard's supervisor (python -m simctl.store.supervisor) needs
# neither redis-py nor numpy, and starts faster without them
_FROM = {"Client": "client", "LLDebug": "logs", "LLDeveloper": "logs", "LLInfo": "logs", "LLQuiet": "logs",
         "LogLevel": "logs", "log_data": "logs", "Dataset": "dataset", "FormatError": "format", "KindError": "format",
         "StoreConnectionError": "format", "StoreError": "format", "StoreKeyError": "format",
         "StoreTimeoutError": "format",
         "ModelSpec": "spec"}


def __getattr__(name: str) -> Any:
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Client", "Dataset", "FormatError", "KindError", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "LogLevel",
           "ModelSpec", "StoreConnectionError", "StoreError", "StoreKeyError", "StoreTimeoutError", "log_data"]
