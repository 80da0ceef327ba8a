"""A local module the app imports: it must be mounted into the container."""


def double(x: int) -> int:
    return 2 * x
