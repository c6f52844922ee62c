"""Loading libshmex and declaring its functions for ctypes (private).

The library is found, in order, at the path given to :func:`load`, at
``$SHMEX_LIBRARY``, next to this package (``shmex/libshmex.so``, where an
installation puts it), and through ``ctypes.util.find_library("shmex")``.
ctypes releases the GIL for every call, so a thread blocked in a receive or a
wait does not hold up the others.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

# The version of shmex.h these bindings were written against: the library
# must have the same major version and at least this minor version.
VERSION_MAJOR = 0
VERSION_MINOR = 2

FOREVER = -1

ROLE_AGENT = 1
ROLE_CLIENT = 2

IDLE_DEFAULT, IDLE_SPIN, IDLE_PARK, IDLE_BACKOFF = 0, 1, 2, 3

LIFETIME_SINGLE_USE, LIFETIME_OWNED, LIFETIME_LEASED = 0, 1, 2

PROXY_MAX = 64

FORM_VALUE, FORM_BYTES = 0, 1

ACTION_REQUEST, ACTION_RESPONSE = 1, 2
PING_REQUEST, PING_RESPONSE = 3, 4
SHUTDOWN_REQUEST, SHUTDOWN_RESPONSE = 5, 6

# Status codes of shmex.h.
OK = 0
EINVAL = -1
EBADHANDLE = -2
ECLOSED = -3
EBADID = -4
EMAILBOX_CLOSED = -5
ETIMEDOUT = -6
EPENDING = -7
EREMOTE = -8
EAGENT_TERMINATED = -9
ECANCELED = -10
ESHUTDOWN = -11
ETOOLARGE = -12
ENOSPACE = -13
EPROXY = -14
ETRUNCATED = -15
EEXIST = -16
EIO = -17
EBUSY = -18


class Id(Structure):
    """shmex_id: a UUID and a role."""

    _fields_ = [("uuid", c_uint8 * 16), ("role", c_uint32)]


class Options(Structure):
    """shmex_options."""

    _fields_ = [
        ("size", c_size_t),
        ("root", c_char_p),
        ("idle", c_int32),
        ("reserved", c_int32),
        ("mailbox_bytes", c_uint64),
    ]


class Message(Structure):
    """shmex_message."""

    _fields_ = [
        ("kind", c_int32),
        ("terminate", c_int32),
        ("tag", c_uint8 * 16),
        ("label", c_uint8 * 16),
        ("src", Id),
        ("dest", Id),
        ("action", c_void_p),
        ("action_len", c_size_t),
        ("args", c_void_p),
        ("args_len", c_size_t),
        ("result", c_void_p),
        ("result_len", c_size_t),
        ("error_kind", c_void_p),
        ("error_kind_len", c_size_t),
        ("error_message", c_void_p),
        ("error_message_len", c_size_t),
    ]


H = c_void_p  # every opaque handle
PH = POINTER(c_void_p)
PU8 = POINTER(c_uint8)
PPU8 = POINTER(PU8)
PSIZE = POINTER(c_size_t)
PID = POINTER(Id)
PMSG = POINTER(Message)

# name: (restype, argtypes). Input buffers are c_char_p, so that bytes pass
# without a copy.
_SIGNATURES = {
    "shmex_version": (c_int, []),
    "shmex_version_string": (c_char_p, []),
    "shmex_strerror": (c_char_p, [c_int]),
    "shmex_last_error": (c_char_p, []),
    "shmex_last_error_kind": (c_char_p, []),
    "shmex_free": (None, [c_void_p]),
    "shmex_id_format": (c_int, [PID, c_char_p, c_size_t]),
    "shmex_id_parse": (c_int, [c_char_p, PID]),
    "shmex_open": (c_int, [c_char_p, POINTER(Options), PH]),
    "shmex_close": (c_int, [H]),
    "shmex_register_agent": (c_int, [H, c_char_p, POINTER(c_char_p), c_size_t, c_char_p, PID]),
    "shmex_register_client": (c_int, [H, c_char_p, PID]),
    "shmex_terminate": (c_int, [H, PID]),
    "shmex_status": (c_int, [H, PID, POINTER(c_int)]),
    "shmex_discover": (c_int, [H, c_char_p, c_int, PID, c_size_t, PSIZE]),
    "shmex_send": (c_int, [H, PMSG, c_int64]),
    "shmex_mailbox_open": (c_int, [H, PID, PH]),
    "shmex_mailbox_recv": (c_int, [H, c_int64, PMSG]),
    "shmex_mailbox_close": (c_int, [H]),
    "shmex_client_open": (c_int, [H, c_char_p, PH]),
    "shmex_client_id": (c_int, [H, PID]),
    "shmex_client_close": (c_int, [H]),
    "shmex_handle_open": (c_int, [H, PID, PH]),
    "shmex_handle_close": (c_int, [H, c_int64]),
    "shmex_call": (c_int, [H, c_char_p, c_char_p, c_size_t, c_int64, PPU8, PSIZE]),
    "shmex_action": (c_int, [H, c_char_p, c_char_p, c_size_t, PH]),
    "shmex_future_done": (c_int, [H]),
    "shmex_future_wait": (c_int, [H, c_int64, PPU8, PSIZE]),
    "shmex_future_take": (c_int, [H, c_int64, c_void_p, c_size_t, PSIZE]),
    "shmex_future_cancel": (c_int, [H]),
    "shmex_future_free": (c_int, [H]),
    "shmex_ping": (c_int, [H, c_int64, POINTER(c_int64)]),
    "shmex_shutdown": (c_int, [H, c_int64]),
    "shmex_agent_open": (c_int, [H, c_char_p, POINTER(c_char_p), c_size_t, c_char_p, PID, PH]),
    "shmex_agent_id": (c_int, [H, PID]),
    "shmex_agent_recv": (c_int, [H, c_int64, PH, PMSG]),
    "shmex_request_reply": (c_int, [H, c_char_p, c_size_t]),
    "shmex_request_fail": (c_int, [H, c_char_p, c_char_p]),
    "shmex_agent_shutdown": (c_int, [H]),
    "shmex_agent_close": (c_int, [H]),
    "shmex_loan_alloc": (c_int, [H, c_size_t, c_int, c_int64, PH, PH]),
    "shmex_loan_commit": (c_int, [H, c_char_p, c_size_t, PSIZE]),
    "shmex_loan_abort": (c_int, [H]),
    "shmex_action_loan": (c_int, [H, c_char_p, H, c_char_p, c_size_t, PSIZE, PH]),
    "shmex_put": (c_int, [H, c_void_p, c_size_t, c_int, c_int64, c_char_p, c_size_t, PSIZE]),
    "shmex_is_proxy": (c_int, [c_char_p, c_size_t]),
    "shmex_resolve": (c_int, [H, c_char_p, c_size_t, PH, PH, PSIZE]),
    "shmex_view_release": (c_int, [H]),
    "shmex_view_form": (c_int, [H]),
    "shmex_reserve": (c_int, [H, POINTER(c_size_t), c_size_t]),
    "shmex_proxy_free": (c_int, [H, c_char_p, c_size_t]),
}

_lib = None
_lock = threading.Lock()


class LibraryNotFound(ImportError):
    """libshmex could not be loaded."""


def _candidates(path):
    if path:
        yield path
        return
    env = os.environ.get("SHMEX_LIBRARY")
    if env:
        yield env
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libshmex.so")
    if os.path.exists(here):
        yield here
    found = ctypes.util.find_library("shmex")
    if found:
        yield found


def load(path: str | None = None) -> ctypes.CDLL:
    """Load libshmex (once per process) and return it.

    Later calls return the library loaded first, whatever their path: one
    process holds one Go runtime.
    """
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for cand in _candidates(path):
            try:
                lib = ctypes.CDLL(cand)
            except OSError as e:
                errors.append(f"{cand}: {e}")
                continue
            break
        else:
            raise LibraryNotFound(
                "libshmex not found: build it with "
                "`go build -buildmode=c-shared -o libshmex.so ./capi` in the shmex "
                "module and set SHMEX_LIBRARY to its path (or copy it next to the "
                "shmex package)" + ("; tried " + "; ".join(errors) if errors else "")
            )
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        v = lib.shmex_version()
        major, minor = v // 10000, v // 100 % 100
        if major != VERSION_MAJOR or minor < VERSION_MINOR:
            raise LibraryNotFound(
                f"libshmex {lib.shmex_version_string().decode()} does not match these "
                f"bindings (need {VERSION_MAJOR}.{VERSION_MINOR} or a later "
                f"{VERSION_MAJOR}.x)"
            )
        _lib = lib
        return lib


def unchecked(name: str):
    """A second entry to the library's function ``name``, without argtypes,
    for the hot path: ctypes then makes no Python-level conversion per
    argument (a few hundred ns less per call). The caller must pass only
    ctypes instances, bytes, None, ``byref()`` objects, and ints in
    [0, 2**31) (ctypes passes an int as a C int, which the C ABI widens:
    a larger one would be truncated)."""
    lb = lib()
    f = lb._FuncPtr((name, lb))
    f.restype = c_int
    f.argtypes = None
    return f


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    return _lib if _lib is not None else load()
