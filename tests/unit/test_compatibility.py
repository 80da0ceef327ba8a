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
    servicer = ShoalServicer.__new__(ShoalServicer)
    mapping = servicer.__mapping__()
    assert len(mapping) == len(ModalClientBase.__abstractmethods__)
