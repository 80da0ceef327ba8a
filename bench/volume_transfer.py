"""Volume throughput: one large file put and read back through the client (`Volume.read_file`
into memory, and into a file as `modal volume get` does), many small files, and the large
file read inside a container that mounts the volume; a plain copy on the same disk is the floor.

    eval "$(shoal env)"; python bench/volume_transfer.py [--mib 512] [--files 1000]
"""

import argparse
import hashlib
import os
import shutil
import tempfile
import time

import modal

app = modal.App("bench-volume-transfer")


@app.function(volumes={"/vol": modal.Volume.from_name("bench-volume", create_if_missing=True)})
def read_inside(path: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return time.perf_counter() - t0, digest.hexdigest()


def _rate(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / 2**20, 1)


def main(mib: int, files: int) -> dict:
    vol = modal.Volume.from_name("bench-volume", create_if_missing=True)
    result = {}
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        size = mib << 20
        with open(big, "rb") as f:
            expected = hashlib.file_digest(f, "sha256").hexdigest()

        t0 = time.perf_counter()
        shutil.copyfile(big, big + ".copy")
        result["disk_copy_mib_s"] = _rate(size, time.perf_counter() - t0)
        os.remove(big + ".copy")

        t0 = time.perf_counter()
        with vol.batch_upload(force=True) as upload:
            upload.put_file(big, "/big.bin")
        result["put_mib_s"] = _rate(size, time.perf_counter() - t0)

        t0 = time.perf_counter()
        digest = hashlib.sha256()
        for chunk in vol.read_file("/big.bin"):
            digest.update(chunk)
        result["read_mib_s"] = _rate(size, time.perf_counter() - t0)
        assert digest.hexdigest() == expected

        os.sync()  # the upload's writes reach the disk first: they would slow the download's own
        t0 = time.perf_counter()
        with open(os.path.join(tmp, "back.bin"), "wb") as f:
            vol.read_file_into_fileobj("/big.bin", f)
        result["get_mib_s"] = _rate(size, time.perf_counter() - t0)
        with open(os.path.join(tmp, "back.bin"), "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == expected

        with app.run():
            seconds, digest = read_inside.remote("/vol/big.bin")
        assert digest == expected
        result["read_in_container_mib_s"] = _rate(size, seconds)

        small = os.path.join(tmp, "small")
        os.mkdir(small)
        for i in range(files):
            with open(os.path.join(small, f"f{i:05d}.txt"), "wb") as f:
                f.write(os.urandom(4096))
        t0 = time.perf_counter()
        with vol.batch_upload(force=True) as upload:
            upload.put_directory(small, "/small")
        result["small_put_files_s"] = round(files / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        listed = vol.listdir("/small")
        result["small_list_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        assert len(listed) == files
    vol.remove_file("/small", recursive=True)
    vol.remove_file("/big.bin")
    print(
        f"{mib} MiB file: put {result['put_mib_s']} MiB/s, read {result['read_mib_s']} MiB/s, "
        f"get to a file {result['get_mib_s']} MiB/s, "
        f"read in a container {result['read_in_container_mib_s']} MiB/s (a copy on this disk: "
        f"{result['disk_copy_mib_s']} MiB/s); {files} files of 4 KiB: put {result['small_put_files_s']} files/s, "
        f"listed in {result['small_list_ms']} ms"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    main(args.mib, args.files)
