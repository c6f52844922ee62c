"""Loans, proxies and payloads within one process."""

from __future__ import annotations

import gc

import pytest

import shmex

np = pytest.importorskip("numpy")


def test_loan_commit_resolve(exchange):
    loan = exchange.loan(4096, lifetime=shmex.OWNED)
    mv = loan.memoryview
    assert not mv.readonly and len(mv) == 4096
    mv[:5] = b"hello"
    proxy = loan.commit()
    assert loan.commit() is proxy
    assert len(proxy.raw) <= 64
    with exchange.resolve(proxy) as p:
        assert p.tobytes()[:5] == b"hello"
        assert p.memoryview.readonly
    exchange.free(proxy)
    with pytest.raises(shmex.ProxyError):
        exchange.resolve(proxy)


def test_loan_abort(exchange):
    with exchange.loan(100) as loan:
        loan.memoryview[0] = 1
    assert "aborted" in repr(loan)
    with pytest.raises(shmex.ShmexError):
        loan.commit()


def test_loan_arrays(exchange):
    """A loan's arrays, of any dtype (given as a string or a dtype), share
    its bytes; an aborted loan has none."""
    np = pytest.importorskip("numpy")
    loan = exchange.loan(64)
    a = loan.array("f8")
    b = loan.array(np.dtype("u1"), shape=(8, 8))
    c = loan.array("<f8", shape=(2, 4), order="F")
    d = loan.array(np.float64)  # a scalar type, not a dtype
    assert d.dtype == np.float64 and d.shape == (8,)
    with pytest.raises(ValueError):
        loan.array("V3")  # 64 bytes are not a whole number of 3-byte items
    a[:] = np.arange(8)
    assert a.dtype == np.float64 and b.shape == (8, 8) and c.shape == (2, 4)
    assert bytes(b.tobytes()) == a.tobytes() and c[1, 0] == 1.0
    assert a.flags.writeable and not a.flags.owndata
    loan.abort()
    with pytest.raises(shmex.ShmexError):
        loan.array("f8")


def test_payload_lives_while_arrays_do(exchange):
    loan = exchange.loan(8 * 10)
    loan.array("f8")[:] = range(10)
    proxy = loan.commit()
    a = exchange.resolve(proxy).array("f8")  # the Payload is kept by the array
    gc.collect()
    assert a.sum() == 45
    del a
    gc.collect()
    # The single-use payload was released with its last array, then freed.
    with pytest.raises(shmex.ProxyError):
        exchange.resolve(proxy)


def test_put_and_pack(exchange):
    p = exchange.put(b"abc", lifetime=shmex.SINGLE_USE)
    data = exchange.pack({"p": p, "n": 1})
    out = exchange.unpack(data)
    assert isinstance(out["p"], shmex.Payload) and out["p"].tobytes() == b"abc"


def test_bad_proxy(exchange):
    with pytest.raises(ValueError):
        shmex.Proxy(b"\xc0")
    forged = shmex.Proxy(b"\xc7\x03Pabc")
    with pytest.raises(shmex.ProxyError):
        exchange.resolve(forged)


def test_close_invalidates(root):
    ex = shmex.Exchange("inval", root=root)
    loan = ex.loan(100)
    p = ex.resolve(ex.put(b"x" * 100))
    ex.close()
    with pytest.raises(shmex.ShmexError):
        p.memoryview
    with pytest.raises(shmex.ShmexError):
        loan.commit()
    with pytest.raises(shmex.HandleClosedError):
        ex.loan(100)  # the single-use fast path checks too
    with pytest.raises(shmex.ShmexError):
        loan.array()


def test_without_numpy(root):
    """The package needs only the standard library and msgpack: without
    numpy, loans and payloads are memoryviews, and .array says why not."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["numpy"] = None  # import numpy now fails
import shmex
with shmex.Exchange("nonumpy", root={root!r}) as ex:
    with ex.loan(8) as small:  # single use: Exchange.loan's fast path
        small.memoryview[:2] = b"ok"
    loan = ex.loan(16, lifetime=shmex.OWNED)
    loan.memoryview[:3] = b"abc"
    p = ex.resolve(loan.commit())
    assert p.tobytes()[:3] == b"abc"
    try:
        p.array()
    except ImportError as e:
        print("no numpy:", e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no numpy: numpy is not installed" in out.stdout


def test_loan_sizes_and_leases_past_int32(exchange):
    """Loans whose size or lease does not fit a C int take the checked entry
    (a size that would be truncated must not be)."""
    with exchange.loan(16, lease=3.0) as loan:  # 3e9 ns
        assert "open" in repr(loan) and len(loan.memoryview) == 16
    with pytest.raises(ValueError, match="4611686018427387909 bytes"):
        exchange.loan(1 << 62 | 5)  # refused, not truncated to 5 bytes
