import pytest


@pytest.fixture(scope="session")
def postgres_url():
    from postgres import PostgresServer

    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
