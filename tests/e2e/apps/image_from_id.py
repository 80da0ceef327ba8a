"""modal.Image.from_id: build an image once, then run a function on it by its id alone."""

import sys

import modal

if sys.argv[1] == "build":
    app = modal.App("e2e-image-build")
    with app.run():
        image = modal.Image.debian_slim().run_commands("echo by-id > /opt/by_id").build(app)
    print("image id:", image.object_id)
else:
    app = modal.App("e2e-image-from-id")
    image = modal.Image.from_id(sys.argv[2])

    @app.function(image=image, serialized=True)
    def read() -> str:
        return open("/opt/by_id").read().strip()

    with app.run():
        print("read:", read.remote())
