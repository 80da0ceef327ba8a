"""How many containers an app has, as `modal container list` shows them (for the apps' own checks)."""

import json
import os
import subprocess
import sys


def containers_of(app_id: str) -> int:
    modal_cli = os.path.join(os.path.dirname(sys.executable), "modal")
    listing = subprocess.run(
        [modal_cli, "container", "list", "--app-id", app_id, "--json"], capture_output=True, text=True, check=True
    )
    return len(json.loads(listing.stdout))
