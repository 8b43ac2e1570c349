"""``smartredis.error``: SmartRedis's error names over simctl's store errors."""

from typing import Any

import simctl

RedisReplyError: Any = simctl.StoreError
RedisRuntimeError: Any = simctl.StoreError
RedisBadAllocError: Any = simctl.StoreError
RedisDatabaseError: Any = simctl.StoreError
RedisInternalError: Any = simctl.StoreError
RedisConnectionError: Any = simctl.StoreConnectionError
RedisTimeoutError: Any = simctl.StoreTimeoutError
RedisKeyError: Any = simctl.StoreKeyError

__all__ = ["RedisBadAllocError", "RedisConnectionError", "RedisDatabaseError", "RedisInternalError",
           "RedisKeyError", "RedisReplyError", "RedisRuntimeError", "RedisTimeoutError"]
