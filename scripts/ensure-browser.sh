#!/bin/sh
# Make Debian's Chromium available for the browser tests, when this user may install it.
#
# `make test` runs this first. With Chromium present, or NURTURE_SKIP_BROWSER=1, it does
# nothing. As root with apt (or with password-less sudo) it installs Debian's `chromium`
# and a font package, so pages render text. Otherwise it says so, and the suite skips only
# the tests marked `browser`, naming the reason in its summary. It never fails the run:
# the suite decides what a missing browser means.
set -u

CHROMIUM=/usr/bin/chromium

[ "${NURTURE_SKIP_BROWSER:-}" = "1" ] && exit 0
[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "==> Chromium is missing and this user cannot install it: the browser tests will be skipped"
    echo "    (install it with: sudo apt-get install chromium fonts-liberation)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "==> Chromium is missing and there is no apt-get here: the browser tests will be skipped"
    exit 0
fi

echo "==> installing Debian's chromium for the browser tests (once; a minute or two)"
log="$(mktemp)"
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q >"$log" 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        chromium fonts-liberation >>"$log" 2>&1; then
    rm -f "$log"
    "$CHROMIUM" --version 2>/dev/null || true
else
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "==> installing chromium failed (above): the browser tests will be skipped" >&2
fi
exit 0
