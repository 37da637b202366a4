#!/usr/bin/env bash
# Headless Chromium for the browser test (tests/test_ui_browser.py): the Debian packages
# `chromium` and `chromium-driver`. Idempotent and quiet: does nothing when /usr/bin/chromium
# exists. Playwright drives this binary; `playwright install` (a download) is never used.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; install Chromium at /usr/bin/chromium yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
