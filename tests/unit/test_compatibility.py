"""docs/compatibility.md lists exactly the RPCs the servicer implements."""

import re
from pathlib import Path

from modal_proto.api_grpc import ModalClientBase

from shoal.api.rpc import implemented_rpcs
from shoal.api.servicer import ShoalServicer

DOC = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


def documented_rpcs() -> set[str]:
    rpc_section = DOC.read_text().split("## RPCs", 1)[1]
    return set(re.findall(r"^\| (\w+) \| (?:supported|partial)", rpc_section, re.M))


def test_documented_rpcs_match_the_servicer():
    assert documented_rpcs() == implemented_rpcs(ShoalServicer)


def test_every_rpc_answers():
    # Every RPC of the client's protocol has a handler of shoal's own: implemented, or saying it is not.
    servicer = ShoalServicer(None, None)
    for name in ModalClientBase.__abstractmethods__:
        assert getattr(type(servicer), name) is not getattr(ModalClientBase, name), name
