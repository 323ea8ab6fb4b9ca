"""Every unary guest operation the agent link declares is answered by a Guest method taking its
request model: the two sides cannot drift apart unnoticed."""

from __future__ import annotations

import inspect
import typing

from wrenn_platform.host_agent.guest import OPERATIONS, Guest
from wrenn_platform.wire.agent import GUEST_OPS


def test_every_declared_operation_has_a_guest_method_with_its_models() -> None:
    assert set(OPERATIONS) == set(GUEST_OPS)
    for name, op in GUEST_OPS.items():
        method = OPERATIONS[name]
        assert getattr(Guest, method.__name__) is method
        hints = typing.get_type_hints(method)
        request = next(p for p in inspect.signature(method).parameters if p != "self")
        assert hints[request] is op.request, name
        assert hints["return"] is op.response, name
