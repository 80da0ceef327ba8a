"""Rank 0 of a cluster gathers every rank's report over TCP, at its cluster address (apps import it)."""

import json
import socket
import time


def exchange(rank: int, ips: list[str], port: int, mine: dict) -> list[dict]:
    """Rank 0 gets every rank's report, in rank order; the other ranks get []."""
    if rank == 0:
        with socket.socket(socket.AF_INET6) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((ips[0], port))
            server.listen()
            reports = [mine]
            for _ in ips[1:]:
                conn, _ = server.accept()
                with conn:
                    reports.append(json.loads(conn.makefile().readline()))
            return sorted(reports, key=lambda r: r["rank"])
    deadline = time.time() + 60
    while True:
        try:
            with socket.create_connection((ips[0], port), timeout=5) as conn:
                conn.sendall((json.dumps(mine) + "\n").encode())
                return []
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
