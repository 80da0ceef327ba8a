"""Domain errors. api/ maps each to a gRPC status with the same message."""


class ShoalError(Exception):
    """Base for errors the user caused and should read."""


class NotFound(ShoalError):
    pass


class InvalidArgument(ShoalError):
    pass


class FailedPrecondition(ShoalError):
    pass


class Unauthenticated(ShoalError):
    pass


class AlreadyExists(ShoalError):
    pass


class ResourceExhausted(ShoalError):
    pass
