"""The content-addressed image store seen from the command line: sharing, `du` and `gc`."""

import json
import os
import re
import secrets
import urllib.error
import urllib.request

import pytest
from conftest import running_shoal


def images_json(shoal, *args: str):
    return json.loads(shoal.shoal("images", *args, "--json").stdout)


def test_images_share_their_base_and_gc_frees_only_what_no_live_app_uses(shoal):
    # Built once in the shared cache, so the copy below already holds both images' layers.
    shoal.modal("run", "image_store.py")
    with running_shoal(clone_images=True) as own:
        marker = own.home / "collected"
        live = own.spawn_modal("run", "image_store.py", "--wait-for", str(marker))
        try:
            lines = []
            for line in live.stdout:
                lines.append(line)
                if line.startswith("images:"):
                    break
            assert "ran: True" in "".join(lines), "".join(lines)
            ids = json.loads(lines[-1].removeprefix("images:"))

            garbage = own.home / "garbage_app.py"
            garbage.write_text(
                "import modal\napp = modal.App('e2e-garbage')\n"
                f"image = modal.Image.debian_slim().run_commands('echo {secrets.token_hex(8)} > /garbage.txt')\n"
                "@app.function(image=image)\ndef f():\n    return open('/garbage.txt').read()\n"
            )
            own.modal("run", str(garbage))
            before = {row["image_id"]: row for row in images_json(own, "ls")}
            assert set(ids.values()) < set(before) and len(before) == 3
            base, package = before[ids["base"]], before[ids["package"]]
            assert package["source"] == ids["base"] and package["layer_ids"][:-1] == base["layer_ids"]

            gc = own.shoal("images", "gc").stdout
            assert int(re.search(r"removed (\d+) layers", gc).group(1)) >= 1, gc
            after = {row["image_id"]: row for row in images_json(own, "ls")}
            assert set(after) == set(ids.values())
            assert len(os.listdir(own.home / "images" / "manifests")) == len(package["layer_ids"])

            # The base is stored once: the two images take little more than the larger one alone.
            usage = images_json(own, "du")
            assert usage["images"] == 2 and usage["logical_bytes"] == base["bytes"] + package["bytes"]
            assert usage["stored_bytes"] <= 1.05 * package["bytes"], usage
            assert usage["dedup_ratio"] > 1.8
            assert images_json(own, "du", ids["package"])["stored_bytes"] == usage["stored_bytes"]

            marker.touch()  # what gc kept still runs
            rest = live.stdout.read()
            assert live.wait(timeout=300) == 0, rest
            assert "after gc:" in rest
        finally:
            if live.poll() is None:
                live.kill()


def test_admin_routes_want_a_token(shoal):
    state = json.loads((shoal.home / "server.json").read_text())
    url = f"http://{state['host']}:{state['http_port']}/admin/images"
    request = urllib.request.Request(url, headers={"x-modal-token-id": "ak-nobody", "x-modal-token-secret": "wrong"})
    for attempt in (url, request):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(attempt, timeout=30)
        assert refused.value.code == 401
    assert "Image" in shoal.shoal("images", "ls").stdout
