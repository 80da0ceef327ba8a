#!/bin/sh
# The device check of issue 5 in one command, for a machine with an NVIDIA GPU that reaches no
# registry: Debian packages carried in .carry/ (runc, where the machine has none) are unpacked
# aside, then bench/gpu_smoke.py runs with the machine's own Python and PyTorch.
#
# Prepare, here:  echo /.carry/ >> .git/info/exclude; mkdir -p .carry; (cd .carry && apt-get download runc)
# There:          sh bench/gpu_smoke.sh     (carrying .carry; the report lands in $OUT)
set -e
for deb in .carry/*.deb; do
    if [ -e "$deb" ]; then dpkg -x "$deb" /tmp/carried; fi
done
export PATH="/tmp/carried/usr/sbin:/tmp/carried/usr/bin:$PATH"
nvidia-smi -L || true
PYTHONPATH=src exec python3 bench/gpu_smoke.py --out "${OUT:-/tmp}/gpu_smoke.json"
