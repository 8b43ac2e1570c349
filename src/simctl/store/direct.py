"""The client's direct path: one connection to one server, kept open, over
which commands are packed and replies read in a few lines of Python, under
redis-py's client layer and connection pool (whose per-command checks cost
about a fifth of a small get).

* A command's arguments are packed once; a :class:`~simctl.store.wire.Parts`
  argument or a large buffer goes out as it is (``sendmsg``; ``sendall`` of
  each piece over TLS), never joined.
* A large bulk reply is received straight into its final buffer
  (``recv_into``): for a tensor (``array=True``) an uninitialised
  ``numpy.empty`` (no zero fill, no intermediate copy), else a ``bytearray``.
* The errors are redis-py's (``redis.ConnectionError``, ``redis.TimeoutError``,
  ``redis.ResponseError`` and its subclasses, by redis-py's own table), so
  that the client turns them into simctl's as it does redis-py's.
* A broken connection is opened again and the exchange sent once more, at
  once; a timeout is final (the server may be running the commands): the
  connection is closed, the next call opens a new one.
* TCP (keep-alive, no Nagle), TCP over TLS (the certificate authority alone
  trusted, the host name checked) and Unix sockets.
* The waits are the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO`` on a blocking
  socket), not Python's socket timeout, which polls before every send and
  receive (7 system calls more a ``run_model`` round); an exchange's own wait
  is set only when it differs from the one set by more than :data:`SLACK`.
  A TLS connection keeps Python's timeout (its reads may need writes).

A connection serves one thread at a time (a lock), and a forked child never
uses its parent's connection: it opens its own.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis
from redis._parsers import _RESP2Parser

from .address import Address

#: bulk replies at least this large are received straight into a buffer of their own
BIG_REPLY = 128 * 1024
#: arguments at least this large are sent as they are, not joined with the rest of the command
BIG_ARG = 16 * 1024
#: bytes a read asks the socket for (a large reply is read into its buffer at once)
CHUNK = 65536
#: a wait differing from the one set by at most this fraction of it (or 10 ms) is not set again
SLACK = 0.01

#: redis-py's table of error replies -> exception classes (``parse_error``)
_ERRORS = _RESP2Parser(CHUNK)
_CRLF = b"\r\n"

#: every open connection, forgotten in a forked child (it must not talk on its parent's socket)
_ALL: weakref.WeakSet[Direct] = weakref.WeakSet()


def _forget_all() -> None:
    for d in list(_ALL):
        d._forget()


os.register_at_fork(after_in_child=_forget_all)


class Direct:
    """One connection to the server at ``address``, opened on first use and
    kept open. ``timeout``: seconds each answer (and the handshake) may take
    (None: no limit); ``connect``: seconds the server may take to accept the
    connection. ``username``/``password``: the AUTH; ``tls_ca``: TLS,
    trusting that certificate authority alone (TCP only); ``name``: the
    connection's name (``CLIENT SETNAME``, in the handshake)."""

    def __init__(self, address: Address, password: str | None, *, username: str | None = None,
                 tls_ca: str | None = None, timeout: float | None = None, connect: float | None = None,
                 keepalive: bool = True, name: str | None = None) -> None:
        self.address = address
        self._name = name
        self._password, self._username = password, username
        self._tls_ca = None if address.is_unix else tls_ca
        self.timeout, self._connect_timeout, self._keepalive = timeout, connect, keepalive
        self._sock: socket.socket | None = None
        self._tls = False
        #: the wait set on the open socket (seconds; None: none)
        self._set: float | None = None
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()
        _ALL.add(self)

    def __repr__(self) -> str:
        return f"Direct({str(self.address)!r}, {'open' if self._sock is not None else 'closed'})"

    # -- commands --------------------------------------------------------------------------

    def call(self, cmds: Sequence[tuple[Any, ...]], *, array: bool = False, retry: bool = True,
             timeout: float | None | bool = False, until_error: bool = False) -> list[Any]:
        """Send ``cmds`` in one write and return their replies, an error reply
        in its place as redis-py's exception (not raised). ``array``: a bulk
        reply is a buffer of its own: a ``bytearray`` for a small one, an
        uninitialised ``numpy`` uint8 array for a large one (without
        ``array``, a large one is a ``bytearray``, a small one ``bytes``).
        ``retry``: once more after the connection broke (never after a
        timeout). ``timeout``: seconds this exchange may wait for each
        answer (False: the connection's). ``until_error``: the replies end
        with the first error reply, and the connection is closed, the later
        commands' replies unread (a blocking command sent after a script the
        server does not hold, say, is not waited for). Raises redis-py's
        connection and timeout errors."""
        return self.call_packed(pack(cmds), len(cmds), array=array, retry=retry, timeout=timeout,
                                until_error=until_error)

    def call_packed(self, packed: list[Any], count: int, *, array: bool = False, retry: bool = True,
                    timeout: float | None | bool = False, until_error: bool = False) -> list[Any]:
        """:meth:`call` of ``count`` commands already packed (:func:`pack`, or
        the same bytes put together by a caller that sends them often)."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._sock is None:
                        self._open()
                    wait = self.timeout if timeout is False else timeout
                    if wait != self._set:
                        self._wait(wait)
                    self._send(packed)
                    if until_error:
                        out = []
                        for _ in range(count):
                            out.append(self._reply(array))
                            if isinstance(out[-1], redis.RedisError) and len(out) < count:
                                self.close()  # the later replies unread
                                return out
                    else:
                        out = [self._reply(array) for _ in range(count)]
                    return out
                except redis.ConnectionError:
                    self.close()
                    if attempt or not retry:
                        raise
                except BaseException:
                    self.close()  # a reply may be left unread
                    raise
        raise AssertionError("not reached")  # pragma: no cover

    def last(self, cmds: Sequence[tuple[Any, ...]], **kwargs: Any) -> Any:
        """:meth:`call`, returning the last reply; the first error reply is raised."""
        if len(cmds) == 1 and kwargs.get("timeout", False) is False and kwargs.get("retry", True):
            return self.one(cmds[0], array=kwargs.get("array", False))
        out = self.call(cmds, **kwargs)
        for reply in out:
            if isinstance(reply, redis.RedisError):
                raise reply
        return out[-1]

    def one(self, cmd: tuple[Any, ...], array: bool = False) -> Any:
        """The reply to the one command ``cmd`` (:meth:`call`'s fast path); an error reply is raised.
        A command on one key (``GET key``...) is packed once (:data:`_ones`)."""
        if len(cmd) == 2 and type(cmd[0]) is str and type(cmd[1]) is str:
            packed = _ones.get(cmd)
            if packed is None:
                packed = pack((cmd,))
                if len(packed[0]) <= _ONE_MAX:
                    if len(_ones) >= _BULK_MAX:
                        _ones.clear()
                    _ones[cmd] = packed
            return self.one_packed(packed, array)
        return self.one_packed(pack((cmd,)), array)

    def one_packed(self, packed: list[Any], array: bool = False) -> Any:
        """:meth:`one` of a command already packed (:func:`pack`, or bytes put together by a caller
        that sends them often)."""
        with self._lock:
            try:
                if self._sock is None:
                    self._open()
                elif self._set != self.timeout:
                    self._wait(self.timeout)
                self._send(packed)
                reply = self._reply(array)
            except redis.ConnectionError:
                self.close()
                try:  # once more, at once, on a new connection
                    self._open()
                    self._send(packed)
                    reply = self._reply(array)
                except BaseException:
                    self.close()
                    raise
            except BaseException:
                self.close()  # a reply may be left unread
                raise
        if isinstance(reply, redis.RedisError):
            raise reply
        return reply

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        sock, self._sock = self._sock, None
        self._buf, self._pos = b"", 0
        self._set = None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _forget(self) -> None:
        """In a forked child: drop the parent's connection without a word on it."""
        self._sock, self._buf, self._pos, self._set = None, b"", 0, None
        self._lock = threading.Lock()

    # -- the connection ----------------------------------------------------------------------

    def _open(self) -> None:
        a = self.address
        where = a.path if a.is_unix else f"{a.host}:{a.port}"
        try:
            if a.is_unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self._connect_timeout)
                    sock.connect(a.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((a.host, a.port), timeout=self._connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except TimeoutError:
            raise redis.TimeoutError(f"Timeout connecting to server {where}") from None
        except OSError as exc:
            raise redis.ConnectionError(f"Error {exc.errno} connecting to {where}. {exc.strerror}.") from None
        try:
            if self._tls_ca:
                sock.settimeout(self.timeout)
                context = ssl.create_default_context(cafile=self._tls_ca)
                sock = context.wrap_socket(sock, server_hostname=a.host)
            else:
                sock.settimeout(None)  # blocking: the kernel keeps the waits
            self._sock, self._tls = sock, bool(self._tls_ca)
            self._set = -1.0
            self._wait(self.timeout)
            hello = [("AUTH", self._username or "default", self._password or "")] if (
                self._password or self._username) else []
            hello += [("CLIENT", "SETNAME", self._name)] if self._name else []
            if hello:
                self._send(pack(hello))
                for reply in [self._reply(False) for _ in hello]:
                    if isinstance(reply, redis.RedisError):
                        raise reply
        except ssl.SSLError as exc:
            self.close()
            raise redis.ConnectionError(f"TLS with {where} failed: {exc}") from None
        except TimeoutError:
            self.close()
            raise redis.TimeoutError("Timeout reading from socket") from None
        except OSError as exc:
            self.close()
            raise redis.ConnectionError(f"Error while connecting to {where}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _wait(self, seconds: float | None) -> None:
        """Let each send and receive on the open socket wait at most ``seconds`` (None: no limit)."""
        now = self._set
        if now == seconds or (now is not None and seconds is not None and now > 0
                              and abs(now - seconds) <= max(0.01, SLACK * now)):
            return
        sock = self._sock
        assert sock is not None
        if self._tls:
            sock.settimeout(seconds)
        else:
            us = 0 if seconds is None else max(1, round(seconds * 1e6))  # 0 would mean no limit
            tv = struct.pack("@ll", us // 1_000_000, us % 1_000_000)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self._set = seconds

    # -- sending -----------------------------------------------------------------------------

    def _send(self, pieces: list[Any]) -> None:
        sock = self._sock
        assert sock is not None
        try:
            if len(pieces) == 1:
                sock.sendall(pieces[0])
            elif self._tls:  # an SSLSocket has no sendmsg
                for piece in pieces:
                    sock.sendall(piece)
            else:
                _sendmsg(sock, pieces)
        except (TimeoutError, BlockingIOError):  # (BlockingIOError: the kernel's wait ended)
            raise redis.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            raise redis.ConnectionError(f"Error {exc.errno} while writing to socket. {exc.strerror}.") from None

    # -- reading -----------------------------------------------------------------------------

    def _more(self) -> None:
        """Read what the socket has into the buffer (after what is left unread)."""
        try:
            chunk = self._sock.recv(CHUNK)  # type: ignore[union-attr]
        except OSError as exc:
            raise _read_error(exc) from None
        if not chunk:
            raise redis.ConnectionError("Connection closed by server.")
        self._buf = self._buf[self._pos:] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0  # (callers holding an offset into the buffer take it as 0 after this)

    def _line(self) -> bytes:
        end = self._buf.find(_CRLF, self._pos)
        while end < 0:
            self._more()
            end = self._buf.find(_CRLF, self._pos)
        line = self._buf[self._pos:end]
        self._pos = end + 2
        return line

    def _reply(self, array: bool) -> Any:
        buf, pos = self._buf, self._pos  # (locals: this runs for every reply)
        if pos >= len(buf):  # the common case: all read, the reply still to come (_more, inline)
            try:
                buf = self._sock.recv(CHUNK)  # type: ignore[union-attr]
            except OSError as exc:
                raise _read_error(exc) from None
            if not buf:
                raise redis.ConnectionError("Connection closed by server.")
            self._buf = buf
            pos = 0
        end = buf.find(_CRLF, pos)
        if end < 0:
            self._pos = pos
            line = self._line()
            buf, pos = self._buf, self._pos
        else:
            line = buf[pos:end]
            pos = end + 2
        kind = line[0]
        if kind == 36:  # $: a bulk string
            n = int(line[1:])
            if n < 0 or n >= BIG_REPLY:
                self._pos = pos
                return None if n < 0 else self._big(n, array)
            if len(buf) - pos < n + 2:
                self._pos = pos
                while len(self._buf) - self._pos < n + 2:
                    self._more()
                buf, pos = self._buf, self._pos
            self._pos = pos + n + 2
            if array:  # a buffer of its own (the caller's array is made on it without another copy)
                return bytearray(buf[pos:pos + n])  # (small: two copies cost less than a memoryview)
            return buf[pos:pos + n]
        self._pos = pos
        if kind == 58:  # :
            return int(line[1:])
        if kind == 43:  # +
            return line[1:]
        if kind == 42:  # *
            n = int(line[1:])
            if n < 0:
                return None
            out = []
            for _ in range(n):  # (a loop: a comprehension is a call of its own before Python 3.12)
                out.append(self._reply(array))
            return out
        if kind == 45:  # -
            return _ERRORS.parse_error(line[1:].decode("utf-8", "replace"))
        raise redis.ConnectionError(f"Protocol error, got {line[:40]!r} as reply type byte")

    def _big(self, n: int, array: bool) -> Any:
        """A bulk reply of ``n`` bytes, received into a buffer of its own."""
        out: Any = np.empty(n + 2, np.uint8) if array else bytearray(n + 2)
        with memoryview(out) as view:
            have = min(len(self._buf) - self._pos, n + 2)
            view[:have] = self._buf[self._pos:self._pos + have]
            self._pos += have
            got = have
            sock = self._sock
            assert sock is not None
            try:
                while got < n + 2:
                    k = sock.recv_into(view[got:])
                    if not k:
                        raise redis.ConnectionError("Connection closed by server.")
                    got += k
            except OSError as exc:
                raise _read_error(exc) from None
            if view[n:] != _CRLF:
                raise redis.ConnectionError("Protocol error: a bulk reply without its terminator")
        if array:
            return out[:n]
        del out[n:]
        return out


def _read_error(exc: OSError) -> redis.RedisError:
    """redis-py's error for a failed read from the socket (BlockingIOError: the kernel's wait ended)."""
    if isinstance(exc, (TimeoutError, BlockingIOError)):
        return redis.TimeoutError("Timeout reading from socket")
    return redis.ConnectionError(f"Error while reading from socket: {exc}")


def _sendmsg(sock: socket.socket, pieces: list[Any]) -> None:
    """All of ``pieces`` in as few ``sendmsg`` calls as the socket takes (the list is left as it was)."""
    pieces = list(pieces)
    while pieces:
        sent = sock.sendmsg(pieces)
        while sent:
            size = memoryview(pieces[0]).nbytes
            if sent >= size:
                sent -= size
                pieces = pieces[1:]
            else:
                pieces[0] = memoryview(pieces[0]).cast("B")[sent:]
                sent = 0


#: str and int arguments seen -> their RESP bulk strings (names, keys, script SHAs repeat); cleared when full
_bulk: dict[Any, bytes] = {}
#: the heads of commands of up to 15 arguments
_ARRAYS = [b"*%d\r\n" % n for n in range(16)]
_BULK_MAX = 4096
#: commands on one key sent by :meth:`Direct.one` (name, key) -> packed, at most _ONE_MAX bytes; cleared when full
_ones: dict[tuple[str, str], list[Any]] = {}
_ONE_MAX = 300


def _encoded(arg: Any) -> bytes:
    b = arg.encode() if type(arg) is str else b"%d" % arg
    out = b"$%d\r\n%b\r\n" % (len(b), b)
    if len(b) <= 256:
        if len(_bulk) >= _BULK_MAX:
            _bulk.clear()
        _bulk[arg] = out
    return out


def bulk(arg: str | int | bytes) -> bytes:
    """One argument (a str, an int or bytes) as a RESP bulk string."""
    if type(arg) is bytes:
        return b"$%d\r\n%b\r\n" % (len(arg), arg)
    return _bulk.get(arg) or _encoded(arg)


def pack(cmds: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``cmds`` in RESP: the pieces to send, small ones joined, large
    arguments (and a :class:`~simctl.store.wire.Parts`'s large buffers) as
    they are. ``redis.DataError`` for an argument of no type Redis takes."""
    pieces: list[Any] = []
    small: list[bytes] = []
    add = small.append
    for cmd in cmds:
        add(_ARRAYS[len(cmd)] if len(cmd) < 16 else b"*%d\r\n" % len(cmd))
        for arg in cmd:
            t = type(arg)
            if t is str or t is int:
                add(_bulk.get(arg) or _encoded(arg))
                continue
            if t is bytes:
                if len(arg) < BIG_ARG:
                    add(b"$%d\r\n%b\r\n" % (len(arg), arg))
                    continue
            elif t is float:
                arg = repr(arg).encode()
            elif hasattr(arg, "buffers"):  # wire.Parts
                add(b"$%d\r\n" % arg.size)
                for b in arg.buffers:
                    if len(b) >= BIG_ARG:
                        pieces.append(b"".join(small))
                        small.clear()
                        pieces.append(b)
                    else:
                        add(bytes(b))
                add(_CRLF)
                continue
            elif isinstance(arg, (bytearray, memoryview, np.ndarray)):
                arg = memoryview(arg).cast("B")  # type: ignore[arg-type]
            else:
                raise redis.DataError(f"Invalid input of type: {type(arg).__name__!r}. Convert to a bytes, "
                                      "string, int or float first.")
            add(b"$%d\r\n" % len(arg))
            if len(arg) >= BIG_ARG:
                pieces.append(b"".join(small))
                small.clear()
                pieces.append(arg)
            else:
                add(bytes(arg))
            add(_CRLF)
    pieces.append(b"".join(small))
    return pieces
