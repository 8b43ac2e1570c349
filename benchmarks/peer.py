"""Peer library (SmartSim 0.8.0) in a side virtual environment.

The benchmarks compare simctl against SmartSim measured in the same run.
SmartSim is never installed into the project's own environment: it lives in
``benchmarks/.peer-venv`` (gitignored), created on first use by
:func:`ensure_peer_python` and reused afterwards (a marker file records what
was installed, so later calls return at once).

:func:`run_peer` runs one operation of ``benchmarks/peer_ops.py`` inside that
venv and returns the JSON it reports (timings in seconds).

Command line::

    python benchmarks/peer.py                 # create/check the venv only
    python benchmarks/peer.py create_ensemble # run one op, print its JSON
    python benchmarks/peer.py generate na=10 nb=10
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PEER_PACKAGE = "smartsim"
PEER_VERSION = "0.8.0"
# SmartSim 0.8.0 declares Requires-Python >=3.9,<3.12.
_SUPPORTED_PYTHONS = ((3, 9), (3, 10), (3, 11))

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".peer-venv"
LOCK_FILE = BENCH_DIR / ".peer-venv.lock"
CONSTRAINTS = BENCH_DIR / "peer-constraints.txt"
PEER_OPS = BENCH_DIR / "peer_ops.py"
MARKER = VENV_DIR / ".simctl-peer-installed.json"

# Environment for the peer subprocesses. SmartSim's logger writes INFO lines
# for every job it polls; keep the peer quiet unless asked otherwise. This
# does not change its launch or polling behaviour.
_DEFAULT_PEER_ENV = {"SMARTSIM_LOG_LEVEL": "warning"}


def _log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def _venv_python() -> Path:
    return VENV_DIR / "bin" / "python"


def _expected_marker() -> dict[str, str]:
    constraints = CONSTRAINTS.read_bytes() if CONSTRAINTS.exists() else b""
    return {
        "package": PEER_PACKAGE,
        "version": PEER_VERSION,
        "constraints_sha256": hashlib.sha256(constraints).hexdigest(),
    }


def _marker_ok() -> bool:
    if not _venv_python().exists() or not MARKER.exists():
        return False
    try:
        recorded = json.loads(MARKER.read_text())
    except (OSError, ValueError):
        return False
    expected = _expected_marker()
    return all(recorded.get(k) == v for k, v in expected.items())


def _python_version(python: str) -> tuple | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _find_base_python() -> str:
    """An interpreter SmartSim 0.8.0 supports (3.9-3.11) to build the venv from."""
    candidates = []
    override = os.environ.get("SIMCTL_PEER_PYTHON")
    if override:
        candidates.append(override)
    candidates.append(sys.executable)
    for name in ("python3", "python3.11", "python3.10", "python3.9"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    for cand in candidates:
        if _python_version(cand) in _SUPPORTED_PYTHONS:
            return cand
    raise RuntimeError(
        "No Python 3.9-3.11 interpreter found for the SmartSim 0.8.0 peer venv "
        f"(tried {candidates}); set SIMCTL_PEER_PYTHON to one."
    )


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Serialise venv creation between concurrently started benchmarks."""
    import fcntl

    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip_install(python: Path, constrained: bool) -> bool:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input", f"{PEER_PACKAGE}=={PEER_VERSION}"]
    if constrained and CONSTRAINTS.exists():
        cmd[4:4] = ["-c", str(CONSTRAINTS)]
    _log("running: " + " ".join(cmd))
    # pip's own output goes to our stderr so progress is visible.
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    return proc.returncode == 0


def ensure_peer_python() -> Path:
    """Create (if needed) the SmartSim 0.8.0 venv; return its python path.

    Idempotent: once the marker file matches, this returns without running
    anything.
    """
    if _marker_ok():
        return _venv_python()
    with _install_lock():
        if _marker_ok():  # another process finished it while we waited
            return _venv_python()
        t0 = time.perf_counter()
        python = _venv_python()
        if not python.exists() or _python_version(str(python)) not in _SUPPORTED_PYTHONS:
            if VENV_DIR.exists():
                _log(f"removing unusable venv {VENV_DIR}")
                shutil.rmtree(VENV_DIR)
            base = _find_base_python()
            _log(f"creating venv {VENV_DIR} with {base}")
            subprocess.run([base, "-m", "venv", str(VENV_DIR)], check=True,
                           stdout=sys.stderr, stderr=sys.stderr)
        MARKER.unlink(missing_ok=True)
        _log(f"installing {PEER_PACKAGE}=={PEER_VERSION} (constraints: {CONSTRAINTS.name})")
        if not _pip_install(python, constrained=True):
            _log("constrained install failed; retrying without constraints")
            if not _pip_install(python, constrained=False):
                raise RuntimeError(f"pip could not install {PEER_PACKAGE}=={PEER_VERSION} "
                                   f"into {VENV_DIR}")
        check = subprocess.run(
            [str(python), "-c",
             "import smartsim, smartsim.experiment; print(smartsim.__version__)"],
            capture_output=True, text=True,
        )
        got = check.stdout.strip()
        if check.returncode != 0 or got != PEER_VERSION:
            raise RuntimeError(f"peer venv check failed (version {got!r}):\n{check.stderr}")
        freeze = subprocess.run([str(python), "-m", "pip", "freeze"],
                                capture_output=True, text=True).stdout.split()
        marker = dict(_expected_marker(), python=str(python),
                      installed=sorted(freeze),
                      created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        tmp = MARKER.with_suffix(".tmp")
        tmp.write_text(json.dumps(marker, indent=1))
        tmp.replace(MARKER)
        _log(f"peer venv ready in {time.perf_counter() - t0:.1f} s")
    return python


def _kill_group(pgid: int) -> None:
    """End whatever is left of the process group we started (e.g. SmartSim's
    telemetry monitor, which otherwise lingers for its 90 s cooldown)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def run_peer(op: str, *, env: dict[str, str] | None = None,
             timeout: float | None = 1800, **kwargs: Any) -> dict[str, Any]:
    """Run ``peer_ops.py OP`` inside the peer venv and return its JSON result.

    ``kwargs`` are passed to the op as a JSON object. ``env`` adds/overrides
    environment variables for the peer process. The peer's own output goes to
    our stderr; the result travels through a temporary file, so stray output
    of SmartSim cannot corrupt it.
    """
    python = ensure_peer_python()
    penv = dict(os.environ)
    penv.update(_DEFAULT_PEER_ENV)
    # The peer must not see the project's src/ or venv on its path.
    penv.pop("PYTHONPATH", None)
    penv.pop("VIRTUAL_ENV", None)
    if env:
        penv.update(env)
    fd, result_path = tempfile.mkstemp(prefix=f"peer-{op}-", suffix=".json")
    os.close(fd)
    try:
        cmd = [str(python), str(PEER_OPS), op, json.dumps(kwargs), "--result", result_path]
        proc = subprocess.Popen(cmd, stdout=sys.stderr, stderr=sys.stderr, env=penv,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            raise RuntimeError(f"peer op {op!r} timed out after {timeout} s") from None
        finally:
            _kill_group(proc.pid)
        if rc != 0:
            raise RuntimeError(f"peer op {op!r} failed with exit code {rc}")
        with open(result_path) as fh:
            return json.load(fh)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(result_path)


def _parse_cli_kwargs(items: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


if __name__ == "__main__":
    py = ensure_peer_python()
    if len(sys.argv) == 1:
        print(py)
    else:
        print(json.dumps(run_peer(sys.argv[1], **_parse_cli_kwargs(sys.argv[2:])), indent=1))
