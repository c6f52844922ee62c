"""The exchange, entity ids, handles and futures."""

from __future__ import annotations

import ctypes
import enum
import threading
import time
import uuid
from ctypes import byref, c_int, c_int64, c_size_t, c_void_p
from typing import Any, Iterable

import msgpack

from . import _lib as L
from .errors import HandleClosedError, ShmexError, check, error
from .payload import LEASED, OWNED, PROXY_EXT, SINGLE_USE, Loan, Payload, Proxy

__all__ = [
    "AgentId",
    "ClientId",
    "EntityId",
    "Exchange",
    "Future",
    "Handle",
    "MailboxStatus",
]


def _ns(timeout: float | None) -> int:
    """A timeout in seconds (None: forever) as shmex's nanoseconds."""
    if timeout is None:
        return L.FOREVER
    return max(0, int(timeout * 1e9))


class EntityId:
    """The id of an agent or a client: a UUID and a role (Academy's EntityId).

    ``str(id)`` is ``"agent:<uuid>"`` or ``"client:<uuid>"``, what
    :meth:`parse` (and every shmex binding) reads.
    """

    __slots__ = ("uid", "role")
    ROLE = 0

    def __init__(self, uid: uuid.UUID, role: int | None = None):
        self.uid = uid
        self.role = self.ROLE if role is None else role

    @staticmethod
    def parse(s: str) -> "EntityId":
        """Parse the text form of an id."""
        role, sep, rest = s.partition(":")
        cls = {"agent": AgentId, "client": ClientId}.get(role)
        if not sep or cls is None:
            raise ValueError(f"malformed entity id {s!r}")
        return cls(uuid.UUID(rest))

    @staticmethod
    def _from_c(cid: L.Id) -> "EntityId":
        u = uuid.UUID(bytes=bytes(cid.uuid))
        return AgentId(u) if cid.role == L.ROLE_AGENT else ClientId(u) if cid.role == L.ROLE_CLIENT else EntityId(u, cid.role)

    def _to_c(self) -> L.Id:
        cid = L.Id()
        ctypes.memmove(cid.uuid, self.uid.bytes, 16)
        cid.role = self.role
        return cid

    def __str__(self) -> str:
        role = {L.ROLE_AGENT: "agent", L.ROLE_CLIENT: "client"}.get(self.role, f"role{self.role}")
        return f"{role}:{self.uid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.uid}')"

    def __eq__(self, other) -> bool:
        return isinstance(other, EntityId) and other.uid == self.uid and other.role == self.role

    def __hash__(self) -> int:
        return hash((self.uid, self.role))


class AgentId(EntityId):
    """The id of an agent."""

    __slots__ = ()
    ROLE = L.ROLE_AGENT


class ClientId(EntityId):
    """The id of a client (Academy's UserId/ClientId)."""

    __slots__ = ()
    ROLE = L.ROLE_CLIENT


class MailboxStatus(enum.IntEnum):
    """The state of a mailbox (Academy's MailboxStatus)."""

    MISSING = 0
    ACTIVE = 1
    TERMINATED = 2


def behavior_names(behavior) -> tuple[str, list[str]]:
    """The name of a behavior (a Behavior class, an instance, or a string)
    and the names of the behaviors it implements (its Behavior base
    classes), for registration and discovery."""
    if isinstance(behavior, str):
        return behavior, []
    cls = behavior if isinstance(behavior, type) else type(behavior)
    from .agent import Behavior  # the agent module imports this one

    impl = [c.__name__ for c in cls.__mro__[1:] if isinstance(c, type) and issubclass(c, Behavior) and c is not Behavior]
    return cls.__name__, impl


def _cstrs(names: Iterable[str]):
    enc = [n.encode() for n in names]
    arr = (ctypes.c_char_p * max(1, len(enc)))(*enc)
    return arr, len(enc)


class Exchange:
    """A shmex exchange on this node, shared by every process that opens the
    same ``name`` (and ``root``): registration, discovery, handles to agents,
    and zero-copy payloads. Thread-safe. Close it (or use ``with``) when done:
    closing releases every handle, future, agent, loan and payload made from
    it.

    ``idle`` is how receivers wait: ``"default"`` (the exchange's: spin a
    little, then sleep), ``"spin"`` (lowest latency, a core busy while
    waiting), ``"park"``, or ``"backoff"`` (spin, yield, then sleep, adapting
    to where the sender runs: the choice for an oversubscribed node).
    ``library`` is the path of libshmex (see :func:`shmex.load`).
    """

    def __init__(self, name: str, *, root: str | None = None, idle: str = "default",
                 mailbox_bytes: int = 0, library: str | None = None):
        lib = L.load(library)
        if _action is None:
            _bind()
        opts = L.Options()
        opts.size = ctypes.sizeof(L.Options)
        opts.root = root.encode() if root else None
        opts.idle = {"default": L.IDLE_DEFAULT, "spin": L.IDLE_SPIN, "park": L.IDLE_PARK, "backoff": L.IDLE_BACKOFF}[idle]
        opts.mailbox_bytes = mailbox_bytes
        self._h = c_void_p()
        check(lib.shmex_open(name.encode(), byref(opts), byref(self._h)))
        self.name = name
        self.root = root
        self._closed = False
        self._lock = threading.Lock()
        self._client = None  # the C client shared by get_handle's handles
        self._packer_default = self._default
        self._ext_hook = self._resolve_ext

    # ---------------------------------------------------------------- life

    def close(self) -> None:
        """Close the exchange handle and everything made from it. Views of
        payloads and loans must not be touched afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # loans and payloads look at it before they touch memory
            h, self._h = self._h, None
        check(L.lib().shmex_close(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if self._closed:
            raise HandleClosedError("the exchange is closed", L.ECLOSED)
        return self._h

    # -------------------------------------------------------- registration

    def register_agent(self, behavior, *, name: str | None = None) -> AgentId:
        """Register an agent of ``behavior`` (a Behavior class or a behavior
        name) and return its id; an :class:`shmex.Agent` (or a Go or C
        agent) serves it by taking its mailbox."""
        bname, impl = behavior_names(behavior)
        arr, n = _cstrs(impl)
        cid = L.Id()
        check(L.lib().shmex_register_agent(self._handle(), bname.encode(), arr, n,
                                           name.encode() if name else None, byref(cid)))
        return EntityId._from_c(cid)

    def register_client(self, name: str | None = None) -> ClientId:
        """Register a client mailbox and return its id."""
        cid = L.Id()
        check(L.lib().shmex_register_client(self._handle(), name.encode() if name else None, byref(cid)))
        return EntityId._from_c(cid)

    def terminate(self, uid: EntityId) -> None:
        """Terminate the mailbox of ``uid`` (a no-op when it does not exist)."""
        cid = uid._to_c()
        check(L.lib().shmex_terminate(self._handle(), byref(cid)))

    def status(self, uid: EntityId) -> MailboxStatus:
        """The status of the mailbox of ``uid``."""
        cid = uid._to_c()
        st = c_int()
        check(L.lib().shmex_status(self._handle(), byref(cid), byref(st)))
        return MailboxStatus(st.value)

    def discover(self, behavior, allow_subclasses: bool = True) -> tuple[AgentId, ...]:
        """The ids of the active agents of ``behavior`` (a class or a name),
        and with ``allow_subclasses`` of the behaviors that implement it."""
        bname, _ = behavior_names(behavior)
        cap = 16
        while True:
            ids = (L.Id * cap)()
            n = c_size_t()
            rc = L.lib().shmex_discover(self._handle(), bname.encode(), int(allow_subclasses), ids, cap, byref(n))
            if rc == L.ETRUNCATED:
                cap = n.value + 16
                continue
            check(rc)
            return tuple(EntityId._from_c(ids[i]) for i in range(n.value))

    # ------------------------------------------------------------- handles

    def _client_handle(self):
        with self._lock:
            if self._closed:
                raise HandleClosedError("the exchange is closed", L.ECLOSED)
            if self._client is None:
                c = c_void_p()
                check(L.lib().shmex_client_open(self._h, None, byref(c)))
                self._client = c
            return self._client

    def client_id(self) -> ClientId:
        """The id of the client mailbox that this exchange's handles share."""
        cid = L.Id()
        check(L.lib().shmex_client_id(self._client_handle(), byref(cid)))
        return EntityId._from_c(cid)

    def get_handle(self, agent_id: AgentId) -> "Handle":
        """A handle to the agent ``agent_id``. Every handle of this exchange
        shares one client mailbox."""
        if not isinstance(agent_id, EntityId) or agent_id.role != L.ROLE_AGENT:
            raise TypeError(f"{agent_id!r} is not an AgentId")
        c = self._client_handle()
        h = c_void_p()
        cid = agent_id._to_c()
        check(L.lib().shmex_handle_open(c, byref(cid), byref(h)))
        return Handle(self, h, agent_id)

    # ------------------------------------------------------------ payloads

    def loan(self, nbytes: int, lifetime: int = SINGLE_USE, lease: float | None = None) -> Loan:
        """Writable bytes in this process's arena to fill in place and pass
        as a proxy (see :mod:`shmex.payload`). ``lifetime`` is SINGLE_USE
        (freed once the first reader releases it), OWNED (until
        :meth:`free`) or LEASED (resolvable for ``lease`` seconds)."""
        if lifetime == SINGLE_USE and lease is None and type(nbytes) is int and 0 <= nbytes < _INT_MAX:
            return _lend(Loan, self, nbytes)
        return Loan(self, nbytes, lifetime, lease)

    def put(self, data, lifetime: int = OWNED, lease: float | None = None) -> Proxy:
        """Copy ``data`` (any buffer) into the arena once and return its proxy."""
        lease_ns = int(lease * 1e9) if lease is not None else 0
        if lease is not None:
            lifetime = LEASED
        if isinstance(data, bytes):
            keep, size = data, len(data)
            addr = ctypes.cast(ctypes.c_char_p(data), c_void_p).value
        else:
            mv = memoryview(data).cast("B")
            if mv.readonly:
                mv = memoryview(bytearray(mv))  # ctypes needs a writable buffer: one more copy
            keep = (ctypes.c_char * len(mv)).from_buffer(mv)
            addr, size = ctypes.addressof(keep), len(mv)
        buf = ctypes.create_string_buffer(L.PROXY_MAX)
        n = c_size_t()
        check(L.lib().shmex_put(self._handle(), addr, size, lifetime, lease_ns, buf, L.PROXY_MAX, byref(n)))
        del keep
        return Proxy(buf.raw[: n.value])

    def resolve(self, proxy: Proxy) -> Payload:
        """The bytes of a proxy, read in place (read-only)."""
        self._handle()
        return Payload(self, proxy)

    def reserve(self, *sizes: int) -> None:
        """Create warm arena segments ahead of loans of these sizes, so that
        their first use does not pay the first touch of fresh memory (about
        5 µs a page on some virtual machines: seconds for a GiB)."""
        arr = (c_size_t * max(1, len(sizes)))(*sizes)
        check(L.lib().shmex_reserve(self._handle(), arr, len(sizes)))

    def free(self, proxy: Proxy) -> None:
        """Free an OWNED payload this process made."""
        check(L.lib().shmex_proxy_free(self._handle(), proxy.raw, len(proxy.raw)))

    # --------------------------------------------------------- MessagePack

    def _default(self, o):
        if isinstance(o, Loan):
            return o.commit()._ext
        if isinstance(o, Proxy):
            return o._ext
        if isinstance(o, Payload):
            return o.proxy._ext
        if isinstance(o, EntityId):
            return str(o)
        if isinstance(o, (memoryview, bytearray)):
            return bytes(o)
        if hasattr(o, "__array_interface__") and hasattr(o, "tobytes"):
            return o.tobytes()  # a numpy array not in a loan: one copy
        if isinstance(o, tuple):
            return list(o)
        raise TypeError(f"cannot encode {type(o).__name__} as MessagePack")

    def _resolve_ext(self, code: int, data: bytes):
        if code != PROXY_EXT:
            return msgpack.ExtType(code, data)
        p = Payload(self, Proxy(bytes((0xC7, len(data), PROXY_EXT)) + data if len(data) < 256
                                else msgpack.packb(msgpack.ExtType(code, data))))
        if p.form == L.FORM_VALUE:
            # A value a Go wrapper proxied whole: decode it (one copy out of
            # the view), as the Go side does.
            with p:
                return self.unpack(p.memoryview)
        return p

    def pack(self, obj: Any) -> bytes:
        """Encode ``obj`` as MessagePack the way actions' arguments and
        results are: loans, proxies and payloads as proxies, numpy arrays as
        bytes (a copy: lend them instead), ids as their text."""
        tls = _tls
        pk = tls.pk
        if pk is None or pk[1] is not self:
            pk = tls.pk = (msgpack.Packer(use_bin_type=True, default=self._packer_default), self)
        try:
            return pk[0].pack(obj)
        except BaseException:
            tls.pk = None  # a Packer that failed midway may hold a partial buffer
            raise

    def unpack(self, data: bytes) -> Any:
        """Decode MessagePack, resolving proxies into :class:`Payload` views."""
        return msgpack.unpackb(data, raw=False, ext_hook=self._ext_hook, strict_map_key=False)

    def pack_args(self, args: tuple, kwargs: dict) -> bytes:
        """Encode an action's arguments: none as nil, one as itself, several
        as an array, keyword arguments alone as a map (the convention every
        shmex binding follows, so that a Go action of one argument takes one
        Python argument)."""
        if kwargs:
            if args:
                raise TypeError("pass either positional or keyword arguments to an action, not both")
            return self.pack(kwargs)
        if not args:
            return _NIL
        if len(args) == 1:
            return self.pack(args[0])
        return self.pack(list(args))

    def __repr__(self) -> str:
        return f"<Exchange {self.name!r}{' closed' if self._closed else ''}>"


class Handle:
    """A handle to one agent (Academy's Handle): calls its actions, which
    return :class:`Future` objects, pings it and shuts it down. Thread-safe.
    """

    def __init__(self, exchange: Exchange, h: c_void_p, agent_id: AgentId):
        self.exchange = exchange
        self.agent_id = agent_id
        self._h = h
        self._names: dict[str, bytes] = {}

    def action(self, action: str, /, *args, **kwargs) -> "Future":
        """Call the action with these arguments (see
        :meth:`Exchange.pack_args`) and return a future of its result."""
        name = self._names.get(action)
        if name is None:
            name = self._names[action] = action.encode()
        ex = self.exchange
        tls = _tls
        if len(args) == 1 and not kwargs:  # the common case, inlined
            a0 = args[0]
            if type(a0) is Loan and a0._h is not None:
                # A loan alone: commit and call in one entry (shmex_action_loan).
                fref, f = tls.fo
                proxy, pnref, pn = tls.lo
                rc = _action_loan(self._h, name, c_void_p(a0._h), proxy, _PROXY_MAX, pnref, fref)
                n = pn.value
                if n:  # committed, even if the send failed
                    a0._h, a0._raw = None, proxy.raw[:n]
                if rc < 0:
                    raise error(rc)
                return _future(ex, f.value, self)
            pk = tls.pk
            if pk is None or pk[1] is not ex:
                data = ex.pack(a0)
            else:
                try:
                    data = pk[0].pack(a0)
                except BaseException:
                    tls.pk = None
                    raise
        else:
            data = ex.pack_args(args, kwargs)
        fref, f = tls.fo
        n = len(data)
        rc = (_action if n < _INT_MAX else _action_checked)(self._h, name, data, n, fref)
        if rc < 0:
            raise error(rc)
        return _future(ex, f.value, self)

    def ping(self, *, timeout: float | None = None) -> float:
        """Ping the agent and return the round trip in seconds."""
        rtt = c_int64()
        check(L.lib().shmex_ping(self._h, _ns(timeout), byref(rtt)))
        return rtt.value / 1e9

    def shutdown(self, *, timeout: float | None = None) -> None:
        """Ask the agent to shut down and wait for its acknowledgement."""
        check(L.lib().shmex_shutdown(self._h, _ns(timeout)))

    def close(self, *, timeout: float | None = 0) -> None:
        """Close the handle: pending futures may complete for ``timeout``
        seconds (None: as long as they take), then are cancelled."""
        h, self._h = self._h, None
        if h is not None and not self.exchange._closed:
            check(L.lib().shmex_handle_close(h, _ns(timeout)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Futures keep their handle alive: none is pending here.
        h, self._h = self._h, None
        if h is not None:
            try:
                if not self.exchange._closed:
                    L.lib().shmex_handle_close(h, 0)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def __repr__(self) -> str:
        return f"<Handle to {self.agent_id}>"


# Bound on first use (_bind). _action, _action_loan and _take are entries
# without argtypes (L.unchecked): their callers pass ctypes objects, bytes and
# small ints only.
_action = None
_action_checked = None  # shmex_action with argtypes, for arguments of 2 GiB or more
_action_loan = None
_take = None
_future_free = None
_INT_MAX = 1 << 31
_PENDING = object()
_NIL = b"\xc0"
_SLICE = 1_000_000_000  # ns: how long the main thread waits between looks at signals
_ETRUNCATED, _ETIMEDOUT, _FOREVER = L.ETRUNCATED, L.ETIMEDOUT, L.FOREVER  # the hot path's constants
_PROXY_MAX = L.PROXY_MAX
_SLICE_C, _FOREVER_C = c_int64(_SLICE), c_int64(_FOREVER)


def _bind():
    global _action, _action_checked, _action_loan, _take, _future_free
    lib = L.lib()
    _action_checked, _future_free = lib.shmex_action, lib.shmex_future_free
    _action, _action_loan, _take = L.unchecked("shmex_action"), L.unchecked("shmex_action_loan"), L.unchecked("shmex_future_take")


class _Buffers(threading.local):
    """Per-thread scratch: a MessagePack packer and a buffer that results
    are copied into (grown when one does not fit)."""

    def __init__(self):
        # In the main thread, waits are cut in slices so that Ctrl-C
        # (which Python handles between calls) interrupts within a second.
        self.slice = _SLICE_C if threading.current_thread() is threading.main_thread() else _FOREVER_C
        self.pk = None  # (a MessagePack packer, the Exchange it packs for)
        f = c_void_p()  # the future an action returns
        self.fo = (byref(f), f)
        pn = c_size_t()  # a loan's proxy and its length (shmex_action_loan)
        self.lo = (ctypes.create_string_buffer(L.PROXY_MAX), byref(pn), pn)
        self.n = c_size_t()
        self.grow(64 << 10)

    def grow(self, size: int) -> None:
        self.size = size
        self.buf = ctypes.create_string_buffer(size)
        # A result is decoded from a view of the buffer (ctypes.string_at
        # copied it out first, at about 0.8 us a result).
        self.mv = memoryview(self.buf).cast("B")
        # What a take passes and reads: one lookup in the thread's state.
        self.take = (self.buf, c_size_t(size), byref(self.n), self.n, self.slice, self.mv)


_tls = _Buffers()
_new = object.__new__
_lend = Loan._lend.__func__


class Future:
    """The result of an action, to come (a subset of
    :class:`concurrent.futures.Future`: ``result``, ``exception``, ``done``,
    ``cancel``). Thread-safe; the result is decoded once and kept.

    The library's future is taken by one thread at a time: ``_hl`` holds its
    handle while nobody waits on it; a waiter pops it (atomic under the GIL),
    and puts it back if its wait times out. A second waiter finds the list
    empty and polls until the first one has settled the future or given the
    handle back.
    """

    __slots__ = ("_ex", "_hl", "_value", "_exc", "_handle")

    def __init__(self, exchange: Exchange, h: int, handle: "Handle | None" = None):
        self._ex = exchange
        self._handle = handle  # keeps the Handle (whose close would cancel us) alive
        self._hl = [h]
        self._value = _PENDING
        self._exc = None

    @staticmethod
    def _new(exchange: Exchange, h: int, handle: "Handle") -> "Future":
        """__init__ without its call (Handle.action makes one per action)."""
        f = _new(Future)
        f._ex = exchange
        f._handle = handle
        f._hl = [h]
        f._value = _PENDING
        f._exc = None
        return f

    def _settle(self, timeout: float | None) -> bool:
        """Wait up to timeout for the outcome; True once it is known."""
        if self._value is not _PENDING or self._exc is not None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                h = self._hl.pop()
            except IndexError:
                # Another thread holds the handle: wait for it to settle the
                # future or give the handle back.
                if self._value is not _PENDING or self._exc is not None:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.0001)
                continue
            if self._ex._closed:
                self._exc = HandleClosedError("the exchange is closed", L.ECLOSED)
                return True
            tls = _tls
            buf, csize, nref, nobj, ns, mv = tls.take
            if timeout is not None:
                ns = c_int64(max(0, int((deadline - time.monotonic()) * 1e9)))
            hc = c_void_p(h)
            try:
                while True:
                    rc = _take(hc, ns, buf, csize, nref)
                    if rc == _ETRUNCATED:
                        tls.grow(nobj.value)
                        buf, csize, nref, nobj, _, mv = tls.take
                    elif rc == _ETIMEDOUT and timeout is None:
                        continue  # the next slice
                    else:
                        break
            except BaseException:  # KeyboardInterrupt between slices
                self._hl.append(h)
                raise
            if rc == _ETIMEDOUT:
                self._hl.append(h)
                return False
            # Taken: the library freed its future, whatever the outcome.
            if rc < 0:
                self._exc = error(rc)
                return True
            n = nobj.value
            b0 = mv[0] if n else -1
            if n == 1 and (b0 < 0x80 or b0 == 0xC0):  # nil, or a positive fixint
                self._value = None if b0 == 0xC0 else b0
                return True
            if 0xCC <= b0 <= 0xCF and n == 1 + (1 << (b0 - 0xCC)):  # uint 8, 16, 32 or 64
                self._value = int.from_bytes(mv[1:n], "big")
                return True
            try:
                self._value = self._ex.unpack(mv[:n])
            except Exception as e:  # a result that is not MessagePack, a bad proxy
                self._exc = e
            return True

    def done(self) -> bool:
        """Whether the outcome is known (a result or an error)."""
        if self._value is not _PENDING or self._exc is not None:
            return True
        if self._ex._closed:
            return True  # result() raises HandleClosedError at once
        try:
            h = self._hl[0]
        except IndexError:
            return False  # another thread is taking it: not known here yet
        return L.lib().shmex_future_done(h) > 0

    def result(self, timeout: float | None = None) -> Any:
        """The action's result, waiting up to ``timeout`` seconds (None:
        forever); TimeoutError when it is not there in time (the future stays
        pending), the agent's error as a :class:`shmex.RemoteError`."""
        if self._value is not _PENDING:
            return self._value
        if not self._settle(timeout):
            raise TimeoutError(f"the action's result did not come within {timeout} s")
        if self._exc is not None:
            raise self._exc
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The action's error, or None; waits as :meth:`result` does."""
        if not self._settle(timeout):
            raise TimeoutError(f"the action's result did not come within {timeout} s")
        return self._exc

    def cancel(self) -> bool:
        """Give up on the result locally (the agent is not told). True when
        the future was pending."""
        if self._value is not _PENDING or self._exc is not None or self._ex._closed:
            return False
        try:
            h = self._hl[0]
        except IndexError:
            return False  # another thread is taking it
        if L.lib().shmex_future_cancel(h) < 0:
            return False
        self._settle(None)
        return self.cancelled()

    def cancelled(self) -> bool:
        from .errors import CancelledError

        return isinstance(self._exc, CancelledError)

    def __del__(self):
        hl = self._hl
        if hl:
            try:
                h = hl.pop()
                if not self._ex._closed:
                    _future_free(h)
            except Exception:  # pragma: no cover - interpreter shutdown, a race
                pass


_future = Future._new
