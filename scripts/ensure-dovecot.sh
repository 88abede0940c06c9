#!/bin/sh
# Make Debian's dovecot IMAP server available for the mailbox reader's tests, when this user
# may install it.
#
# `make test` runs this first. With dovecot present, or NURTURE_SKIP_IMAP=1, it does
# nothing. As root with apt (or with password-less sudo) it installs Debian's
# `dovecot-imapd` (and `openssl`, for the tests' throw-away certificate). The tests start
# their own dovecot on 127.0.0.1, on free ports, in a temporary directory; they never use
# the package's own service. Otherwise it says so, and the suite skips
# only the tests marked `imap`, naming the reason in its summary. It never fails the run:
# the suite decides what a missing server means.
set -u

DOVECOT=/usr/sbin/dovecot
IMAP=/usr/lib/dovecot/imap

[ "${NURTURE_SKIP_IMAP:-}" = "1" ] && exit 0
[ -x "$DOVECOT" ] && [ -x "$IMAP" ] && command -v openssl >/dev/null 2>&1 && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "==> dovecot is missing and this user cannot install it: the IMAP tests will be skipped"
    echo "    (install it with: sudo apt-get install dovecot-imapd openssl)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "==> dovecot is missing and there is no apt-get here: the IMAP tests will be skipped"
    exit 0
fi

echo "==> installing Debian's dovecot-imapd for the IMAP tests (once; a few seconds)"
log="$(mktemp)"
if DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q >"$log" 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        dovecot-imapd openssl >>"$log" 2>&1; then
    rm -f "$log"
    "$DOVECOT" --version 2>/dev/null || true
else
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "==> installing dovecot-imapd failed (above): the IMAP tests will be skipped" >&2
fi
exit 0
