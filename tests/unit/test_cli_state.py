"""What the command line reads of a shoal it started: whether its process still runs."""

import os
import subprocess
import sys
import time

from shoal.cli.state import alive


def test_a_process_that_ended_is_not_alive_even_unreaped():
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while alive(child.pid):  # it ends and stays a zombie: nobody has waited for it yet
        assert time.monotonic() < deadline, "an unreaped child counted as running"
        time.sleep(0.05)
    assert child.poll() == 0  # reaped only now
    assert not alive(child.pid)
