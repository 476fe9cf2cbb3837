#!/usr/bin/env bash
# Create (or refresh) the project environment in .venv/ at the repository root.
#
# Idempotent: when every pinned requirement is already installed it returns in seconds.
# CPU machines: mmcv 2.1.0 is built from source WITH ops (PyPI ships it as source only; torch 2.14
# headers need C++20, so the sdist's -std=c++14/17 flags are patched). The built wheel is kept in
# $MMDAT_WHEEL_CACHE (default ~/.cache/mmdat/wheels), so later fresh clones install in seconds.
# GPU users: see README.md ("Installing on a GPU machine").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMDAT_VENV:-$ROOT/.venv}"
WHEELS="${MMDAT_WHEEL_CACHE:-$HOME/.cache/mmdat/wheels}"
PY="$VENV/bin/python"
STAMP="$VENV/.mmdat-setup-stamp"

log() { echo "[setup_env] $*"; }

# The stamp is the hash of everything that decides what gets installed.
want_stamp="$(cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]]; then
    if "$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmdat" 2>/dev/null; then
        log "environment up to date ($VENV)"
        exit 0
    fi
fi

start=$(date +%s)
if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    python3.11 -m venv "$VENV"
fi
# Every install honours these pins, so no dependency can pull in another torch or a setuptools
# without pkg_resources (torch 2.14 needs setuptools>=77, pkg_resources is gone from 81 on; mmcv's setup.py and mmengine's `mmdet::` config inheritance need it).
CONSTRAINTS="$VENV/mmdat-constraints.txt"
printf 'setuptools>=77,<81\ntorch==2.14.1\ntorchvision==0.29.1\nmmengine==0.10.7\nmmcv==2.1.0\n' > "$CONSTRAINTS"
pip_install() { "$PY" -m pip install --disable-pip-version-check -qq -c "$CONSTRAINTS" "$@"; }

log "installing torch, build tools and mmengine"
pip_install setuptools wheel ninja
pip_install -r "$ROOT/requirements/runtime.txt"
pip_install "mmengine==0.10.7"

# mmcv 2.1.0 with ops, from the wheel cache or built once from the patched sdist.
have_mmcv_ops() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; }
if ! have_mmcv_ops; then
    mkdir -p "$WHEELS"
    wheel="$(ls "$WHEELS"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        log "building mmcv 2.1.0 with ops from source (about 12-15 minutes on 2 cores)"
        src="$(mktemp -d)"
        "$PY" -m pip download --disable-pip-version-check -qq --no-deps --no-build-isolation \
            --no-binary mmcv mmcv==2.1.0 -d "$src"
        tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
        sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/mmcv-2.1.0/setup.py"
        grep -q -- '-std=c++20' "$src/mmcv-2.1.0/setup.py" || { log "could not patch mmcv's C++ standard"; exit 1; }
        (cd "$src/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps -w "$WHEELS" .)
        rm -rf "$src"
        wheel="$(ls "$WHEELS"/mmcv-2.1.0-*.whl | head -n1)"
    fi
    log "installing $wheel"
    pip_install --no-deps "$wheel"
    # mmcv's own runtime dependencies (mmengine is already there)
    pip_install addict packaging Pillow pyyaml yapf opencv-python
fi

log "installing mmdet, mmseg, mmpretrain, test and optional requirements"
pip_install -r "$ROOT/requirements/mminstall.txt" \
    -r "$ROOT/requirements/optional.txt" -r "$ROOT/requirements/tests.txt"
pip_install --no-deps -e "$ROOT"

"$PY" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmdat; print('mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__)"
echo "$want_stamp" > "$STAMP"
log "done in $(( $(date +%s) - start )) s"
