"""``python -m simctl.core.pernode_run -- ARGV...``: the per-node wrapper's
command line (:func:`simctl.core.pernode.main`). A module of its own: the
package imports :mod:`.pernode`, so ``-m simctl.core.pernode`` would run a
second copy of it as ``__main__`` (and warn so in every job's error output)."""

from __future__ import annotations

import sys

from .pernode import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
