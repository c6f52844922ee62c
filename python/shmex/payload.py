"""Zero-copy payloads: loans in this process's arena, proxies, and payloads
received from other processes, read in place.

A :class:`Loan` is writable memory inside this process's arena (shared
memory of the exchange): fill it through :attr:`Loan.memoryview` or
:meth:`Loan.array` (a numpy array over the same bytes), then pass the loan
itself as an action argument or result: it is committed and travels as a
:class:`Proxy`, a few dozen bytes, whatever its size. Nothing is copied.

A proxy of bytes (a loan, a put, a Go ``proxystore.Blob``) received in
arguments or a result is resolved into a :class:`Payload`: a read-only view
of the bytes in the sender's arena (again no copy). A proxy that a Go
``proxystore.Wrap`` made of a whole value decodes into that value (one
copy, as on the Go side). A Payload's lifetime:

* :attr:`Payload.memoryview` and :meth:`Payload.array` return views that keep
  the payload alive: the bytes stay valid as long as the Payload or any view
  made from it is referenced (Python's reference counting releases it, and
  with it the sender's block, as soon as the last one goes);
* :meth:`Payload.release` (or leaving a ``with payload:`` block) releases it
  at once: views made from it must not be read after that;
* closing the :class:`~shmex.Exchange` releases every payload and unmaps the
  arenas: no view may be read after that (reading one may crash the process).

A loan's views must not be written after the loan is committed (passing it
in a call commits it), and must not be read or written after the exchange is
closed.
"""

from __future__ import annotations

import ctypes
import threading
from ctypes import byref, c_size_t, c_void_p

import msgpack

from . import _lib as L
from .errors import HandleClosedError, ShmexError, check, error

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised where numpy is absent
    _np = None

# PROXY_EXT is the MessagePack extension type of a proxy (see docs/wire.md).
PROXY_EXT = 80

SINGLE_USE = L.LIFETIME_SINGLE_USE
OWNED = L.LIFETIME_OWNED
LEASED = L.LIFETIME_LEASED


class _Out(threading.local):
    """Per-thread out-parameters of the library's calls."""

    def __init__(self):
        self.h, self.d, self.n = c_void_p(), c_void_p(), c_size_t()
        self.href, self.dref, self.nref = byref(self.h), byref(self.d), byref(self.n)
        self.proxy = ctypes.create_string_buffer(L.PROXY_MAX)
        # A loan's allocation reads these in one lookup of the thread's state.
        self.alloc = (self.href, self.dref, self.h, self.d)


_out = _Out()
_alloc = None  # shmex_loan_alloc without argtypes (L.unchecked), bound on first use
_alloc_checked = None  # with argtypes: sizes and leases of 2**31 or more
_INT_MAX = 1 << 31


def _bind():
    global _alloc, _alloc_checked
    _alloc_checked = L.lib().shmex_loan_alloc
    _alloc = L.unchecked("shmex_loan_alloc")
    return _alloc


_new = object.__new__
_ubyte = ctypes.c_ubyte
_frombuffer = _np.frombuffer if _np is not None else None
_ndarray = _np.ndarray if _np is not None else None
_dtypes: dict = {}  # dtype argument (a str) -> numpy dtype: the parse, once


def _dtype(dtype):
    """The numpy dtype of ``dtype``, cached for strings (frombuffer parses a
    string each time: a quarter of a small array's cost)."""
    if type(dtype) is not str:
        return dtype if isinstance(dtype, _np.dtype) else _np.dtype(dtype)
    d = _dtypes.get(dtype)
    if d is None:
        d = _np.dtype(dtype)
        if len(_dtypes) < 256:
            _dtypes[dtype] = d
    return d


def _view(ptr: int, n: int, owner, readonly: bool) -> memoryview:
    """A memoryview of n bytes at ptr that keeps owner alive."""
    arr = (ctypes.c_ubyte * n).from_address(ptr)
    arr._shmex_owner = owner  # the view keeps arr, arr keeps the owner
    mv = memoryview(arr).cast("B")
    return mv.toreadonly() if readonly else mv


def _array(mv: memoryview, dtype, shape, order):
    if _np is None:
        raise ImportError("numpy is not installed: use .memoryview")
    a = _np.frombuffer(mv, dtype=_dtype(dtype))
    if shape is not None:
        a = a.reshape(shape, order=order)
    return a


class Proxy:
    """A committed payload: the MessagePack ext that stands for its bytes.

    Pass it as an action argument or result (or inside one: a list, a dict)
    where the bytes would go. ``raw`` is its encoding (at most 64 bytes).
    """

    __slots__ = ("raw", "_ext")

    def __init__(self, raw: bytes):
        self.raw = raw = bytes(raw)
        # The library makes ext 8 proxies (c7 LEN 80 DATA); parse others
        # (fixext, ext 16) with msgpack.
        if len(raw) >= 3 and raw[0] == 0xC7 and raw[2] == PROXY_EXT and raw[1] == len(raw) - 3:
            ext = msgpack.ExtType(PROXY_EXT, raw[3:])
        else:
            ext = msgpack.unpackb(raw, ext_hook=msgpack.ExtType)
            if not isinstance(ext, msgpack.ExtType) or ext.code != PROXY_EXT:
                raise ValueError("not a proxy")
        self._ext = ext

    def __repr__(self) -> str:
        return f"Proxy({self.raw.hex()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Proxy) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class Loan:
    """Writable bytes in this process's arena, to fill in place and send.

    Made by :meth:`shmex.Exchange.loan`. Committing (:meth:`commit`, or
    passing the loan in a call) publishes the bytes; abort gives them back.
    """

    __slots__ = ("_exchange", "_h", "nbytes", "_ptr", "_proxy", "_raw", "__weakref__")

    def __init__(self, exchange, nbytes: int, lifetime: int = SINGLE_USE, lease: float | None = None):
        self._exchange = exchange
        self._h = None
        self._proxy: Proxy | None = None
        self._raw = None  # the proxy's bytes, when a call committed the loan (Proxy made on demand)
        lease_ns = 0
        if lease is not None:
            lease_ns = int(lease * 1e9)
            if lifetime == SINGLE_USE:
                lifetime = LEASED
        o = _out
        alloc = _alloc or _bind()
        if not (0 <= nbytes < _INT_MAX and lease_ns == 0 and 0 <= lifetime <= 2):
            alloc = _alloc_checked  # the entry without argtypes takes small ints only
        rc = alloc(exchange._handle(), nbytes, lifetime, lease_ns, o.href, o.dref)
        if rc < 0:
            raise error(rc)
        self._h = o.h.value
        self.nbytes = nbytes
        self._ptr = o.d.value or 0

    @classmethod
    def _lend(cls, exchange, nbytes: int) -> "Loan":
        """Exchange.loan's common case, a single-use loan of an int under
        2 GiB: __init__ without its checks (a third of a small loan's cost
        in Python)."""
        if exchange._closed:
            raise HandleClosedError("the exchange is closed", L.ECLOSED)
        href, dref, h, d = _out.alloc
        rc = (_alloc or _bind())(exchange._h, nbytes, 0, 0, href, dref)
        if rc < 0:
            raise error(rc)
        self = _new(cls)
        self._exchange = exchange
        self._h = h.value
        self._proxy = self._raw = None
        self.nbytes = nbytes
        self._ptr = d.value or 0
        return self

    def _check(self) -> None:
        if self._exchange._closed:
            raise ShmexError("the exchange is closed: the loan is gone")
        if self._h is None and self._proxy is None and self._raw is None:
            raise ShmexError("the loan was aborted")

    @property
    def memoryview(self) -> memoryview:
        """The loan's bytes, writable (format 'B')."""
        self._check()
        return _view(self._ptr, self.nbytes, self, readonly=False)

    def array(self, dtype="u1", shape=None, order="C"):
        """A numpy array over the loan's bytes (writable, no copy)."""
        if _np is None:
            raise ImportError("numpy is not installed: use .memoryview")
        if self._h is None or self._exchange._closed:
            self._check()
        # numpy straight over the ctypes array (no memoryview between: half
        # the cost); the array keeps the ctypes array, which keeps the loan.
        n = self.nbytes
        arr = (_ubyte * n).from_address(self._ptr)
        arr._shmex_owner = self
        dt = _dtype(dtype)
        size = dt.itemsize
        if size and n % size == 0:
            # What frombuffer makes, made directly (frombuffer costs more
            # on a large buffer: a sixth more for 1 GiB).
            a = _ndarray((n // size,), dt, arr)
        else:
            a = _frombuffer(arr, dtype=dt)  # its error, or a dtype it converts
        if shape is not None:
            a = a.reshape(shape, order=order)
        return a

    def commit(self) -> Proxy:
        """Publish the bytes and return their proxy (idempotent). Do not
        write to the loan afterwards."""
        if self._proxy is not None:
            return self._proxy
        if self._raw is not None:  # committed by Handle.action (shmex_action_loan)
            self._proxy = Proxy(self._raw)
            return self._proxy
        if self._h is None or self._exchange._closed:
            raise ShmexError("the loan was aborted, or its exchange closed")
        o = _out
        rc = L.lib().shmex_loan_commit(self._h, o.proxy, L.PROXY_MAX, o.nref)
        if rc < 0:
            raise error(rc)
        self._h = None
        self._proxy = Proxy(o.proxy.raw[: o.n.value])
        return self._proxy

    def abort(self) -> None:
        """Give the bytes back without publishing them."""
        if self._h is not None:
            h, self._h = self._h, None
            if not self._exchange._closed:  # its close aborted the loan
                check(L.lib().shmex_loan_abort(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._proxy is None and self._raw is None:
            self.abort()

    def __repr__(self) -> str:
        state = "committed" if self._proxy or self._raw else "aborted" if self._h is None or self._exchange._closed else "open"
        return f"<Loan {self.nbytes} bytes, {state}>"


class Payload:
    """A proxy's bytes, read in place in the sender's arena (read-only).

    See the module's documentation for how long the bytes stay valid.
    """

    __slots__ = ("proxy", "_exchange", "_h", "nbytes", "_ptr", "form", "__weakref__")

    def __init__(self, exchange, proxy: Proxy):
        self.proxy = proxy
        self._exchange = exchange
        self._h = None
        o = _out
        raw = proxy.raw
        rc = L.lib().shmex_resolve(exchange._handle(), raw, len(raw), o.href, o.dref, o.nref)
        if rc < 0:
            raise error(rc)
        self._h = o.h.value
        self.nbytes = o.n.value
        self._ptr = o.d.value or 0
        # FORM_BYTES: bytes (a loan's, a Go Blob's, a proxied bin's content);
        # FORM_VALUE: the MessagePack encoding of a value a Go wrapper proxied.
        self.form = L.lib().shmex_view_form(self._h)

    @property
    def memoryview(self) -> memoryview:
        """The bytes, read-only; the view keeps the payload alive."""
        if self._h is None or self._exchange._closed:
            raise ShmexError("the payload was released, or its exchange closed")
        return _view(self._ptr, self.nbytes, self, readonly=True)

    def array(self, dtype="u1", shape=None, order="C"):
        """A read-only numpy array over the bytes (no copy); it keeps the
        payload alive."""
        return _array(self.memoryview, dtype, shape, order)

    def tobytes(self) -> bytes:
        """A copy of the bytes."""
        return bytes(self.memoryview)

    def __len__(self) -> int:
        return self.nbytes

    def release(self) -> None:
        """Release the payload now: views made from it must not be read
        afterwards. A single-use payload is freed by its owner then."""
        h, self._h = self._h, None
        if h is not None and not self._exchange._closed:
            L.lib().shmex_view_release(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"<Payload {self.nbytes} bytes{'' if self._h is not None else ', released'}>"
