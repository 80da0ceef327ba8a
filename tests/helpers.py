"""Helpers shared by the test suites."""

import os
import shutil

import pytest


def require_root_and_runc() -> None:
    """Suites that run containers say so plainly instead of skipping."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root")
    if shutil.which("runc") is None:
        problems.append("runc (apt-get install runc)")
    if problems:
        pytest.fail("this suite needs " + " and ".join(problems) + "; run `make test` as root", pytrace=False)
