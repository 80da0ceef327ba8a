"""Modal's retry policy: how many times an input is retried and how long to wait between."""

from modal_proto import api_pb2


def retry_delay(policy: api_pb2.FunctionRetryPolicy, retry_count: int) -> float | None:
    """Seconds to wait before retry number `retry_count` (1-based), or None when exhausted."""
    if retry_count > policy.retries:
        return None
    initial = policy.initial_delay_ms / 1000
    delay = initial * (policy.backoff_coefficient or 1.0) ** (retry_count - 1)
    if policy.max_delay_ms:
        delay = min(delay, policy.max_delay_ms / 1000)
    return delay
