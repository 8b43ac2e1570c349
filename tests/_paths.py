"""Where the tests' files are, for every layer (the test modules live one level
down, in tests/<layer>/; this module, like the other shared helpers, is
imported by name: pyproject puts tests/ on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

#: tests/
TESTS = Path(__file__).resolve().parent
#: the repository
REPO = TESTS.parent
#: recorded real scheduler output and the test plugin packages
DATA = TESTS / "data"
#: the recording wrappers of the Slurm commands (and slurm_helpers.py)
CMD_RECORDER = TESTS / "cmd_recorder"
#: the LSF stand-in (bsub, bjobs, bkill)
LSF_STANDIN = TESTS / "lsf_standin"
