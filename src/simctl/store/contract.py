"""The environment contract between simctl and the processes it starts: the
variables an application (in any language) reads to find the feature store.

=================  ==========================================================
``SSDB``           the store's address(es): ``host:port`` of every shard,
                   comma-separated (IPv6 hosts in brackets), or
                   ``unix:///path`` of a Unix socket
``SSDB_CLUSTER``   ``1`` when the addresses form a Redis Cluster, else ``0``
``SSDB_PASSWORD``  the password (only ever in the environment or a 0600 file)
``SSKEYOUT``       the prefix this entity's keys are written under (its name)
``SSKEYIN``        comma-separated names whose prefixed keys it reads
=================  ==========================================================

simctl's :class:`simctl.Client` reads them; every module that sets or reads
one names it through the constants here.
"""

from __future__ import annotations

ADDRESS = "SSDB"
CLUSTER = "SSDB_CLUSTER"
PASSWORD = "SSDB_PASSWORD"
KEYOUT = "SSKEYOUT"
KEYIN = "SSKEYIN"
