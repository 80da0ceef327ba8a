"""Image build steps with volumes= end to end: what run_commands and run_function write to a
mounted volume is in the volume afterwards, for later functions, and not in the image."""

import json


def read(proc) -> dict:
    return json.loads(proc.stdout.split("read:", 1)[1].strip().splitlines()[0])


def test_build_steps_write_their_volumes_and_later_functions_read_them(shoal):
    out = read(shoal.modal("run", "image_volumes.py"))
    assert out["volume"] == ["commands/out.txt", "models/weights/model.bin"]
    assert out["model"] == "parameters!"
    assert out["in_image"] == ["from run_commands\n", "weights"]  # what they wrote outside the volume
    assert out["mount_points_in_image"] == []
    assert shoal.modal("volume", "get", "e2e-image-volume", "models/weights/model.bin", "-").stdout.startswith(
        "parameters!"
    )


def test_an_image_built_with_volumes_is_not_built_again_for_them(shoal):
    """As in Modal, the volumes' files are not part of the image: emptied, the volume stays so on
    the next run, whose image comes from the cache."""
    shoal.modal("run", "image_volumes.py")  # built by the test above, or now when run alone
    shoal.modal("volume", "rm", "-r", "e2e-image-volume", "models")
    shoal.modal("volume", "rm", "-r", "e2e-image-volume", "commands")
    proc = shoal.modal("run", "image_volumes.py")
    out = read(proc)
    assert out["volume"] == [] and out["model"] is None
    assert out["in_image"] == ["from run_commands\n", "weights"]
    assert "=> RUN" not in proc.stdout and "=> run_function" not in proc.stdout  # no build step ran
