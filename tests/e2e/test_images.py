"""Images built from the client's Dockerfile commands, cached per layer."""

import json
import re


def test_image_methods_build_and_second_run_builds_nothing(shoal):
    first = shoal.modal("run", "images_app.py")
    result = json.loads(re.search(r"inspect: (\{.*\})", first.stdout).group(1))
    assert result.pop("six").startswith("1.")
    assert result == {
        "jq": True,
        "marker": "built-by-run-commands",
        "greeting": "hello from env",
        "cwd": "/srv/app",
        "copied": "copied into the image",
    }
    second = shoal.modal("run", "images_app.py")
    assert "inspect:" in second.stdout
    assert "=> RUN" not in second.stdout + second.stderr


def test_failing_build_reports_command_and_log_and_caches_nothing(shoal):
    for _ in range(2):  # a failed step is not cached: the second run tries again
        proc = shoal.modal("run", "failing_build.py", check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "echo about to fail && exit 3" in output
        assert "about to fail" in output.replace("echo about to fail", "")
        assert "exit code 3" in output


def test_force_build_rebuilds(shoal):
    script = (
        "import modal\napp = modal.App('e2e-force')\n"
        "image = modal.Image.debian_slim().run_commands('echo forced', force_build=True)\n"
        "@app.function(image=image)\ndef f():\n    return 1\n"
    )
    path = shoal.home / "force_app.py"
    path.write_text(script)
    for _ in range(2):
        proc = shoal.modal("run", str(path) + "::f")
        assert "=> RUN echo forced" in proc.stdout + proc.stderr


def test_app_list_shows_stopped_runs(shoal):
    apps = json.loads(shoal.modal("app", "list", "--json").stdout)
    assert any(a["description"] == "e2e-images" and a["state"] == "stopped" for a in apps)
