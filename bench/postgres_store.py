"""The call path on a PostgreSQL store: a throw-away PostgreSQL from Debian's packages (as the
tests start one), a shoal of its own on it, then map_throughput.py and remote_latency.py.

    python bench/postgres_store.py [N]     (with shoal stopped: this starts its own)
"""

import asyncio
import os
import sys

import map_throughput
import remote_latency
from own_shoal import own_shoal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from postgres import PostgresServer, fresh_database  # noqa: E402


def main(n: int) -> None:
    server = PostgresServer()
    try:
        url = asyncio.run(fresh_database(server.start(), "bench"))
        with own_shoal("on a PostgreSQL store", "--database", url):
            map_throughput.main(n)
            remote_latency.main()
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
