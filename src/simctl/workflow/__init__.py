"""The user's objects, on the core and the store: :class:`Model`,
:class:`Ensemble` and the :class:`Experiment` that makes and runs them."""
