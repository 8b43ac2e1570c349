"""``smartsim.ml.tf``: ``serialize_model`` and ``freeze_model`` (simctl.ml.tf)."""

from simctl.ml.tf import freeze_model, serialize_model

__all__ = ["freeze_model", "serialize_model"]
