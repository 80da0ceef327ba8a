"""Proof that an admin request comes from someone who can read the server's home.

An API token lets its holder run apps; importing a directory of the server's machine as an
image (`shoal images import`) would let them read any file there. That route also wants
this proof: an HMAC, under the server's secret in SHOAL_HOME, which only its owner reads.
"""

import hashlib
import hmac

HEADER = "x-shoal-host-proof"
SECRET_FILE = "server.secret"  # in SHOAL_HOME, mode 0600; it also signs blob URLs


def host_proof(server_secret: bytes) -> str:
    return hmac.new(server_secret, b"shoal: the server's own machine", hashlib.sha256).hexdigest()
