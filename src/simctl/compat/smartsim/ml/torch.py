"""``smartsim.ml.torch``: simctl's torch helpers (simctl.ml.torch)."""

from simctl.ml.torch import serialize_function, serialize_model

__all__ = ["serialize_function", "serialize_model"]
