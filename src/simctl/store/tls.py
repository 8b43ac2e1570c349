"""TLS for a store reached across nodes (``create_database(tls=True)``): a
certificate authority of the store's own, and a server certificate per shard,
made with the ``cryptography`` library.

* The orchestrator makes the authority when it prepares a launch
  (:func:`make_ca`): ``tls-ca.crt`` and ``tls-ca.key`` in its directory
  (mode 0600, in the 0700 directory). Every launch gets a new one.
* Each shard's supervisor, on the node where it runs, makes its server's key
  and certificate (:func:`make_server_cert`: ``shard-<i>.tls.key`` and
  ``.crt``, mode 0600), signed by the authority, naming the node's host names
  and the addresses the server binds (and the loopback), so a client that
  checks host names accepts it wherever the scheduler put the shard.
* Once every shard is ready, the orchestrator deletes the authority's key: no
  other certificate can be signed with it.
* Members receive the authority's certificate (``SSDB_TLS_CA``) and trust it
  alone; the servers listen only on their TLS port (``port 0``), and a
  cluster's nodes and replicas talk TLS to each other too (``tls-cluster``,
  ``tls-replication``). Clients show no certificate: who they are is their
  ACL user and password (:mod:`simctl.store.roles`).

Keys are ECDSA P-256; certificates are valid from an hour ago for
:data:`VALID_DAYS` days.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .server import write_private

if TYPE_CHECKING:  # imported when used: only a TLS store needs cryptography
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

#: how long the authority and the servers' certificates are valid
VALID_DAYS = 3650
#: the files of the authority, in the orchestrator's directory
CA_CERT = "tls-ca.crt"
CA_KEY = "tls-ca.key"


def _key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec  # start-up cost: only a TLS store needs it

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # start-up cost

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(hours=1), now + datetime.timedelta(days=VALID_DAYS)


def make_ca(cert_path: str, key_path: str, name: str) -> None:
    """A new self-signed certificate authority named after the store
    ``name``: its certificate and key written (mode 0600) to the paths given."""
    from cryptography import x509  # start-up cost
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"simctl store {name} CA"[:64])])
    start, end = _validity()
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    write_private(key_path, _pem_key(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def node_names(addresses: Iterable[str]) -> list[str]:
    """What a server certificate on this node names: the ``addresses`` the
    server binds, the loopback addresses, ``localhost``, and this node's host
    names (short and qualified)."""
    host = socket.gethostname()
    names = [*addresses, "127.0.0.1", "::1", "localhost", host, host.split(".")[0], socket.getfqdn()]
    return list(dict.fromkeys(n for n in names if n))


def make_server_cert(ca_cert: str, ca_key: str, cert_path: str, key_path: str, names: Iterable[str]) -> None:
    """A new key and a certificate signed by the authority (``ca_cert``,
    ``ca_key``) for a server known by ``names`` (IP addresses and host names),
    written (mode 0600) to ``cert_path`` and ``key_path``. OSError or
    ValueError when the authority's files cannot be read."""
    from cryptography import x509  # start-up cost
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    with open(ca_cert, "rb") as fh:
        authority = x509.load_pem_x509_certificate(fh.read())
    with open(ca_key, "rb") as fh:
        signer = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key} does not hold the key of a store's certificate authority")
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    key = _key()
    public = key.public_key()
    start, end = _validity()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname()[:64] or "simctl store")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(authority.subject).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            # a cluster's nodes and a replica present this certificate to each other as clients too
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                           critical=False)
            .sign(signer, hashes.SHA256()))
    write_private(key_path, _pem_key(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def remove(path: str) -> None:
    """Delete ``path`` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
