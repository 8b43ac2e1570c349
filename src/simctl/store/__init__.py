"""simctl's feature store client: tensors, datasets and aggregation lists in
Redis (a single server or a Redis Cluster).

    from simctl import Client
    client = Client()                  # the store the launcher named in SSDB
    client.put_tensor("t", array)
    client.get_tensor("t")

The on-Redis format is documented in :mod:`simctl.store.format`.
"""

from .client import Client, LLDebug, LLDeveloper, LLInfo, LLQuiet, LogLevel, log_data
from .dataset import Dataset
from .format import FormatError, StoreConnectionError, StoreError, StoreKeyError

__all__ = ["Client", "Dataset", "FormatError", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "LogLevel",
           "StoreConnectionError", "StoreError", "StoreKeyError", "log_data"]
