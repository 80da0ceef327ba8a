"""What the servicer reads from requests: timestamps and long-poll timeouts."""

import math

import pytest
from google.protobuf import timestamp_pb2

from shoal.api.rpc import poll_timeout, seconds
from shoal.control.errors import InvalidArgument


def test_a_request_timestamp_in_range_is_seconds():
    assert seconds(timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=500_000_000)) == 1_700_000_000.5
    assert seconds(timestamp_pb2.Timestamp()) == 0.0


@pytest.mark.parametrize("ts", [(2**63 - 1, 0), (-(2**63), 0), (0, -1), (0, 10**9), (253402300799, 0)])
def test_a_request_timestamp_out_of_range_is_the_callers_error(ts):
    with pytest.raises(InvalidArgument, match="Timestamp out of range"):
        seconds(timestamp_pb2.Timestamp(seconds=ts[0], nanos=ts[1]))


def test_a_long_poll_waits_what_was_asked_within_bounds():
    assert poll_timeout(3.0, 50.0) == 3.0
    assert poll_timeout(1e30, 50.0) == poll_timeout(math.inf, 50.0) == 50.0
    assert poll_timeout(-1.0, 50.0) == poll_timeout(math.nan, 50.0) == 0.0
