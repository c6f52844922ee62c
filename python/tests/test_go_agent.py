"""A Python client calling a Go agent (capi/capitest's Calc) in another process."""

from __future__ import annotations

import threading
import uuid

import pytest

import shmex

np = pytest.importorskip("numpy")


def test_calls(go_calc):
    ex, calc = go_calc
    assert calc in ex.discover("Calc")
    assert calc in ex.discover("Base")
    h = ex.get_handle(calc)
    assert h.action("add", 2, 40).result(timeout=30) == 42
    assert h.action("echo", {"k": [1, 2.5, "s", b"b", None]}).result() == {"k": [1, 2.5, "s", b"b", None]}
    assert h.action("noop").result() is None
    futures = [h.action("add", i, i) for i in range(100)]
    assert [f.result() for f in futures] == [2 * i for i in range(100)]
    assert h.ping(timeout=30) > 0


def test_scalar_results(go_calc):
    """Results that the take decodes itself (nil, positive fixints,
    unsigned ints of every width) and their neighbours that msgpack
    decodes come back as sent."""
    ex, calc = go_calc
    h = ex.get_handle(calc)
    values = [None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
              -1, -32, -33, -(2**63), 1.5, "", "s", b"", b"x"]
    for v in values:
        got = h.action("echo", v).result(timeout=30)
        assert got == v and type(got) is type(v), (v, got)
    assert h.action("length", ex.loan(1 << 20)).result(timeout=30) == 1 << 20


def test_remote_errors(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    with pytest.raises(shmex.RemoteError) as e:
        h.action("nope").result()
    assert e.value.kind == "UnknownActionError"
    with pytest.raises(ValueError) as e:  # the Go agent chose the kind ValueError
        h.action("fail", "ValueError", "no good").result()
    assert isinstance(e.value, shmex.RemoteError)
    assert "no good" in str(e.value)
    with pytest.raises(shmex.RemoteError) as e:
        h.action("add", "x").result()
    assert e.value.kind == "BadArgumentsError"


def test_timeouts_and_cancel(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    f = h.action("sleep", 300)
    assert not f.done()
    with pytest.raises(TimeoutError):
        f.result(timeout=0)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.01)
    assert f.result(timeout=30) is None
    assert f.done()
    f = h.action("sleep", 300)
    assert f.cancel()
    assert f.cancelled()
    with pytest.raises(shmex.CancelledError):
        f.result()


def test_loan_to_go(go_calc):
    """A 2-D array filled in place in a loan, summed by the Go agent."""
    ex, calc = go_calc
    h = ex.get_handle(calc)
    loan = ex.loan(512 * 256 * 8)
    a = loan.array("<f8", (512, 256))
    a[:] = np.arange(512 * 256, dtype="f8").reshape(512, 256) / 7
    want = float(a.sum())
    assert h.action("sum", loan).result() == pytest.approx(want)
    # Single use: the agent released it; a second use fails.
    with pytest.raises(shmex.RemoteError):
        h.action("sum", loan.commit()).result()


def test_loan_alone_commits_in_the_call(go_calc):
    """A loan passed alone is committed by the call itself
    (shmex_action_loan): it is committed afterwards, its proxy is the one
    sent, and an owned one can be sent again and freed."""
    ex, calc = go_calc
    h = ex.get_handle(calc)
    loan = ex.loan(8 * 1000, lifetime=shmex.OWNED)
    loan.array("f8")[:] = 0.5
    assert h.action("sum", loan).result() == pytest.approx(500.0)
    assert "committed" in repr(loan)
    proxy = loan.commit()
    assert isinstance(proxy, shmex.Proxy) and loan.commit() is proxy
    assert h.action("sum", loan).result() == pytest.approx(500.0)  # the packer path: its proxy again
    assert h.action("length", proxy).result() == 8000
    ex.free(proxy)
    with pytest.raises(shmex.RemoteError):
        h.action("length", proxy).result()
    # Inside other arguments, a loan still goes through the packer.
    loan = ex.loan(16)
    with pytest.raises(shmex.RemoteError):  # "sum" takes one Blob, not a list
        h.action("sum", [loan]).result()
    assert "committed" in repr(loan)


def test_loan_alone_to_a_missing_agent(go_calc):
    """A call that fails after the commit leaves the loan committed (its
    proxy known, to free); one refused before leaves it open."""
    ex, calc = go_calc
    ghost = shmex.AgentId(uuid.uuid4())
    loan = ex.loan(4096, lifetime=shmex.OWNED)
    with pytest.raises(shmex.ShmexError):
        ex.get_handle(ghost).action("length", loan).result()
    assert "committed" in repr(loan)
    ex.free(loan.commit())
    loan = ex.loan(64)
    h = ex.get_handle(calc)
    h.close()
    with pytest.raises(shmex.ShmexError):
        h.action("length", loan)
    assert "open" in repr(loan)
    loan.abort()


def test_put_to_go(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    p = ex.put(np.arange(10, dtype="<f8"))  # one copy, owned
    assert h.action("sum", p).result() == 45.0
    assert h.action("sum", p).result() == 45.0
    ex.free(p)
    with pytest.raises(shmex.RemoteError):
        h.action("sum", p).result()


def test_result_from_go_read_in_place(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    payload = h.action("make", 1 << 20).result()
    assert isinstance(payload, shmex.Payload)
    a = payload.array()
    assert a.flags.writeable is False
    assert np.array_equal(a, (np.arange(1 << 20) % 251).astype("u1"))
    with pytest.raises((ValueError, TypeError)):
        a[0] = 1
    mv = payload.memoryview
    assert mv.readonly and len(mv) == 1 << 20
    del a, mv
    payload.release()
    with pytest.raises(shmex.ShmexError):
        payload.memoryview


def test_threads(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    errors = []

    def work(k):
        try:
            for i in range(200):
                assert h.action("add", k, i).result(timeout=60) == k + i
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k * 1000,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_future_waited_by_several_threads(go_calc):
    ex, calc = go_calc
    h = ex.get_handle(calc)
    f = h.action("sleep", 200)
    got, errors = [], []

    def wait(timeout):
        try:
            got.append(f.result(timeout=timeout))
        except TimeoutError as e:
            errors.append(e)

    ts = [threading.Thread(target=wait, args=(30,)) for _ in range(4)]
    ts.append(threading.Thread(target=wait, args=(0.01,)))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert got == [None] * 4
    assert len(errors) == 1
    assert f.done() and f.result() is None


def test_dropped_handles_are_freed(go_calc):
    """A handle nobody references is closed; a future keeps its handle."""
    ex, calc = go_calc
    f = ex.get_handle(calc).action("add", 1, 2)  # the handle is dropped at once
    assert f.result(timeout=30) == 3
    for _ in range(1000):
        ex.get_handle(calc).action("noop").result()


def test_value_proxied_whole_by_go(go_calc):
    """A result proxied whole by the agent (a proxy of form value, what a Go
    wrapper makes of a large value) arrives as the value."""
    ex, calc = go_calc
    h = ex.get_handle(calc)
    assert h.action("value", 0).result(timeout=30) == [42, "proxied"]
    b = h.action("value", 5000).result(timeout=30)
    assert isinstance(b, bytes) and b == bytes(i % 251 for i in range(5000))


def test_reserve(go_calc):
    ex, calc = go_calc
    ex.reserve(64 << 20, 1 << 20)
    loan = ex.loan(64 << 20)
    loan.array("u1")[:] = 1
    assert ex.get_handle(calc).action("length", loan).result(timeout=30) == 64 << 20
