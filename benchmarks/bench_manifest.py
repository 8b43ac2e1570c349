"""The manifest on disk: the JSON snapshot + journal simctl writes, against
SQLite in WAL mode doing the same work, in the same run.

    python benchmarks/bench_manifest.py [--records N] [--saves M] [--changed K] [--dir DIR] [--repeat R]

What is timed, for each store (the fastest of R runs; every run on fresh files):
  first    writing N records at once (a start() of N members)
  save     M saves of K changed records each, every save first taking in what
           another writer added since (what a controller does every 0.25 s
           while statuses change); the time per save is printed
  load     reading the whole manifest back (what `simctl status` does),
           records parsed into dicts

The JSON side is simctl's own ``manifest.Writer`` / ``manifest.load``
(appends one line per save, compacting into a new snapshot when the journal
outgrows it). The SQLite side is the fairest equivalent: one table keyed by
the record's identity holding the same JSON text and a sequence number;
``journal_mode=WAL``, ``synchronous=NORMAL``; a save is one transaction of
INSERT OR REPLACE; taking in another writer's records is one SELECT of the
rows whose sequence is past the last one seen. Ratios are SQLite / JSON
(above 1: SQLite slower). No target: the figures inform the choice recorded
in benchmarks/README.md ("The manifest: files, not SQLite").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_simctl  # noqa: E402

import_simctl()
from simctl import Status  # noqa: E402
from simctl.core import manifest as mf  # noqa: E402


def records(n: int, run: int = 1) -> list[mf.JobRecord]:
    return [mf.JobRecord(name=f"m_{i}", entity_type="Model", job_id=str(i), run=run, launcher="local",
                         status=Status.QUEUED, ensemble="e", path=f"/scratch/exp/e/m_{i}",
                         launched_at=1000.0 + i, key=f"e/m_{i}", handle={"pid": 4_000_000 + i, "create_time": 1.5,
                                                                        "mark": f"abc:{i}"})
            for i in range(n)]


class JsonStore:
    def __init__(self, directory: str) -> None:
        self.exp_path = directory
        self.writer = mf.Writer(directory)
        self.header = mf.Manifest("bench", directory, "local").header()

    def save(self, encoded: list[tuple[mf.Identity, str]]) -> None:
        self.writer.save(self.header, encoded)

    def load(self) -> int:
        return len(mf.load(self.exp_path).jobs)  # type: ignore[union-attr]

    def close(self) -> None:
        pass


class SqliteStore:
    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "manifest.sqlite")
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (identity TEXT PRIMARY KEY, seq INTEGER, data TEXT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS by_seq ON jobs (seq)")
        self.seq = 0
        self.seen = 0

    def save(self, encoded: list[tuple[mf.Identity, str]]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        foreign = db.execute("SELECT data FROM jobs WHERE seq > ?", (self.seen,)).fetchall()
        del foreign  # nobody else writes here; the query is what a controller would run
        self.seq += 1
        db.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?)",
                       ((json.dumps(ident), self.seq, text) for ident, text in encoded))
        db.execute("COMMIT")
        self.seen = self.seq

    def load(self) -> int:
        reader = sqlite3.connect(self.path)  # a separate connection, as `simctl status` would be
        try:
            return len([json.loads(t) for (t,) in reader.execute("SELECT data FROM jobs ORDER BY rowid")])
        finally:
            reader.close()

    def close(self) -> None:
        self.db.close()


def run(make: Callable[[str], JsonStore | SqliteStore], base: str, n: int, saves: int, k: int) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="manifest-", dir=base)
    try:
        store = make(directory)
        recs = records(n)
        t0 = time.perf_counter()
        store.save(mf.encode(recs))
        first = time.perf_counter() - t0
        batches = []
        for s in range(saves):
            changed = [recs[(s * k + j) % n] for j in range(k)]
            for r in changed:
                r.status = Status.RUNNING if r.status is Status.QUEUED else Status.COMPLETED
            batches.append(mf.encode(changed))
        t0 = time.perf_counter()
        for batch in batches:
            store.save(batch)
        save = (time.perf_counter() - t0) / saves
        t0 = time.perf_counter()
        assert store.load() == n
        load = time.perf_counter() - t0
        store.close()
        size = sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
        return {"first": first, "save": save, "load": load, "bytes": float(size)}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--saves", type=int, default=200)
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--dir", default=None, help="where the files go (default: the system's temporary directory)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = args.dir or tempfile.gettempdir()
    print(f"manifest of {args.records:,} records, {args.saves} saves of {args.changed} changed records, "
          f"in {base} (fastest of {args.repeat})")
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name, make in (("json", JsonStore), ("sqlite-wal", SqliteStore)):
            got = run(make, base, args.records, args.saves, args.changed)
            mine = best.setdefault(name, got)
            for key, value in got.items():
                mine[key] = min(mine[key], value)
    j, s = best["json"], best["sqlite-wal"]
    for key, unit in (("first", "s"), ("save", "ms"), ("load", "s")):
        scale = 1000.0 if unit == "ms" else 1.0
        print(f"{key:6} json {j[key] * scale:9.3f} {unit} | sqlite-wal {s[key] * scale:9.3f} {unit} | "
              f"ratio sqlite/json {s[key] / j[key]:.2f}x")
    print(f"size   json {j['bytes'] / 1e6:9.2f} MB | sqlite-wal {s['bytes'] / 1e6:9.2f} MB (with its -wal file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
