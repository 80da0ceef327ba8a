#!/bin/sh
# Issue 5's GPU function check, for a lent machine that reaches no registry: `modal run` of a
# function with gpu="any" on an image imported from the machine's own /usr, /etc and /opt (where
# its PyTorch is), through a shoal started here. Prints what PyTorch found in the function.
#
# Prepare, here, beside gpu_smoke.sh's .carry/runc*.deb: shoal's dependencies for Python 3.12:
#   python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any -d .carry/wheels \
#     modal==1.6.4 'sqlalchemy[asyncio]>=2.0' 'alembic>=1.13' 'asyncpg>=0.29' 'aiohttp>=3.9' click rich nvidia-ml-py
# There: sh bench/gpu_function.sh   (carrying .carry). To try it elsewhere: GPU="" asks for no GPU,
# HOST_DIRS="usr etc" and VENV_BIN=/usr/bin take the host's own Python, PYTHON a Python with shoal's needs.
set -e
python=${PYTHON:-python3}
for deb in .carry/*.deb; do
    if [ -e "$deb" ]; then dpkg -x "$deb" /tmp/carried; fi
done
if ! "$python" -c "import modal, sqlalchemy, alembic" 2>/dev/null; then  # shoal's needs, from the wheels
    "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl
fi
export PATH="/tmp/carried/usr/sbin:$PATH" PYTHONPATH="$PWD/src:/tmp/site" SHOAL_HOME=${SHOAL_HOME:-/tmp/shoal-gpu}
shoal() { "$python" -m shoal.cli.main "$@"; }

# The machine's files as a root file system: /usr, /etc and /opt bound in (not their submounts:
# the driver's files come as a worker mounts them), and the top-level links of a merged /usr.
root=/tmp/host-root
mkdir -p "$root"
dirs=${HOST_DIRS:-usr etc opt}
for dir in $dirs; do
    [ -d "/$dir" ] || continue
    mkdir -p "$root/$dir"
    mountpoint -q "$root/$dir" || { mount --bind "/$dir" "$root/$dir" && mount -o remount,bind,ro "$root/$dir"; }
done
for link in bin sbin lib lib64; do
    if [ -L "/$link" ]; then ln -sfn "$(readlink "/$link")" "$root/$link"; fi
done

trap 'shoal down || true; for dir in $dirs; do umount "$root/$dir" 2>/dev/null || true; done' EXIT
shoal up --detach --port 7480
start=$(date +%s)
shoal images import host-root "$root"
echo "imported in $(($(date +%s) - start)) s"
eval "$(shoal env)"
"$python" -m modal run bench/gpu_function.py | tee "${OUT:-/tmp}/gpu_function.txt"
