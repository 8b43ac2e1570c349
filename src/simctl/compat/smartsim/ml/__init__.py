"""``smartsim.ml``: the ML helpers (``smartsim.ml.tf``, ``smartsim.ml.torch``)."""
