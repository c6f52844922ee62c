"""The exchange: registration, discovery, status, ids, errors."""

from __future__ import annotations

import uuid

import pytest

import shmex
from tests.agents import Base, PyCalc


def test_version():
    from shmex import _lib

    major, minor = (int(x) for x in shmex.version().split(".")[:2])
    assert major == _lib.VERSION_MAJOR and minor >= _lib.VERSION_MINOR


def test_register_discover_status_terminate(exchange):
    aid = exchange.register_agent(PyCalc, name="calc")
    assert isinstance(aid, shmex.AgentId)
    assert exchange.status(aid) == shmex.MailboxStatus.ACTIVE
    assert aid in exchange.discover(PyCalc)
    assert aid in exchange.discover("PyCalc", allow_subclasses=False)
    assert aid in exchange.discover(Base)  # PyCalc implements Base
    assert aid not in exchange.discover(Base, allow_subclasses=False)
    cid = exchange.register_client("me")
    assert isinstance(cid, shmex.ClientId)
    exchange.terminate(aid)
    assert exchange.status(aid) == shmex.MailboxStatus.TERMINATED
    assert aid not in exchange.discover(PyCalc)
    missing = shmex.AgentId(uuid.uuid4())
    assert exchange.status(missing) == shmex.MailboxStatus.MISSING
    exchange.terminate(missing)  # a no-op, as in Academy


def test_ids_round_trip(exchange):
    aid = exchange.register_agent("X")
    assert shmex.EntityId.parse(str(aid)) == aid
    assert str(aid).startswith("agent:")
    assert hash(shmex.EntityId.parse(str(aid))) == hash(aid)
    with pytest.raises(ValueError):
        shmex.EntityId.parse("nonsense")


def test_errors_are_exceptions(exchange):
    with pytest.raises(TypeError):
        exchange.get_handle(exchange.register_client())
    with pytest.raises(ValueError):
        shmex.Exchange("", root=exchange.root)
    # A call to an agent that does not exist fails: there is no such agent
    # (Academy's BadEntityIdError), which is not an agent that terminated.
    h = exchange.get_handle(shmex.AgentId(uuid.uuid4()))
    with pytest.raises(shmex.BadEntityIdError):
        h.action("x").result(timeout=30)


def test_closed_exchange(root):
    ex = shmex.Exchange("closing", root=root)
    aid = ex.register_agent("X")
    h = ex.get_handle(aid)
    ex.close()
    ex.close()  # idempotent
    with pytest.raises(shmex.HandleClosedError):
        ex.register_agent("X")
    with pytest.raises(shmex.HandleClosedError):
        h.action("x")
    with pytest.raises(shmex.HandleClosedError):
        ex.get_handle(aid)


def test_pack_args(exchange):
    up = exchange.unpack
    assert up(exchange.pack_args((), {})) is None
    assert up(exchange.pack_args((1,), {})) == 1
    assert up(exchange.pack_args(([1, 2],), {})) == [1, 2]
    assert up(exchange.pack_args((1, "a", b"b"), {})) == [1, "a", b"b"]
    assert up(exchange.pack_args((), {"x": 1})) == {"x": 1}
    with pytest.raises(TypeError):
        exchange.pack_args((1,), {"x": 1})
