"""A real IMAP server for the mailbox reader's tests: Debian's dovecot, run in the foreground.

Each :class:`Dovecot` lives in its own directory (made by the test): a configuration, a
throw-away self-signed certificate (``openssl``), a passwd-file with one user, a maildir
store, its base_dir and its log. It listens on 127.0.0.1 only, on two free ports: plain
IMAP with STARTTLS (login only after it) and IMAPS.

Running as root (as the suite does in CI), dovecot refuses to run its login processes or
open mail as root: logins run as ``dovenull``, mail as ``dovecot`` (the users Debian's
package creates), chrooted into the store (``home=<store>/./<user>``), so the test's
private temporary directory needs no looser permissions. Run as anyone else, everything
runs as that user, without chroots (checked as `nobody`).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from imap_tools import MailBox

DOVECOT_PATHS = ("/usr/sbin/dovecot",)
USER = "reader"
# A password that must be percent-encoded in the URL: the reader decodes it.
PASSWORD = "p@ss/w rd%1"


def dovecot_binary() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    return next((p for p in DOVECOT_PATHS if os.access(p, os.X_OK)), None)


def dovecot_unavailable() -> str | None:
    """Why the IMAP tests cannot run here, or None.

    ``make test`` installs Debian's dovecot-imapd when it may (root or password-less sudo
    with apt); elsewhere the tests marked ``imap`` are skipped with this reason.
    """
    if os.environ.get("NURTURE_SKIP_IMAP") == "1":
        return "NURTURE_SKIP_IMAP=1"
    if dovecot_binary() is None:
        return (
            "dovecot is not installed (make test installs Debian's dovecot-imapd when it can; "
            "or: sudo apt-get install dovecot-imapd)"
        )
    if shutil.which("openssl") is None:
        return "openssl is not installed: no certificate for the test IMAP server"
    imap_binary = Path("/usr/lib/dovecot/imap")
    if not imap_binary.exists():
        return "dovecot's IMAP server is missing (install dovecot-imapd)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _system_user(*names: str) -> str:
    for name in names:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError(f"none of the users {names} exists for dovecot to run as")


class Dovecot:
    """One dovecot instance; :meth:`start` and :meth:`stop` may be called again and again
    (same ports, same store: a server restart)."""

    def __init__(self, root: Path, *, settings: str = "") -> None:
        """``settings``: more dovecot settings, for example ``imap_capability = ...``."""
        self.root = root
        self.settings = settings
        self.imap_port = _free_port()
        self.imaps_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = root / "dovecot.conf"
        self.log = root / "dovecot.log"
        self.cert = root / "cert.pem"
        self._write()

    # --- set-up ---------------------------------------------------------------------------

    def _write(self) -> None:
        root = self.root
        (root / "run").mkdir(parents=True, exist_ok=True)
        (root / "state").mkdir(exist_ok=True)
        store = root / "store"
        (store / USER).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(root / "key.pem"), "-out", str(self.cert),
             "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True,
        )  # fmt: skip
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        if os.geteuid() == 0:
            mail_user = _system_user("dovecot", "nobody")
            login_user = _system_user("dovenull", "nobody")
            entry = pwd.getpwnam(mail_user)
            os.chown(store / USER, entry.pw_uid, entry.pw_gid)
            identity = f"""
                default_internal_user = {mail_user}
                default_login_user = {login_user}
                valid_chroot_dirs = {store}
                service auth {{
                  user = root
                }}
                service auth-worker {{
                  user = root
                }}
            """
            userdb = f"uid={mail_user} gid={entry.pw_gid} home={store}/./%u"
            login_chroot = ""
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            identity = f"""
                default_internal_user = {me}
                default_internal_group = {group}
                default_login_user = {me}
                service anvil {{
                  chroot =
                }}
            """
            userdb = f"uid={os.geteuid()} gid={os.getegid()} home={store}/%u"
            login_chroot = "chroot ="
        self.config.write_text(
            f"""
            base_dir = {root}/run
            state_dir = {root}/state
            instance_name = nurture-test-{self.imaps_port}
            log_path = {self.log}
            protocols = imap
            listen = 127.0.0.1
            ssl = required
            ssl_cert = <{self.cert}
            ssl_key = <{root}/key.pem
            disable_plaintext_auth = yes
            auth_mechanisms = plain
            first_valid_uid = 0
            first_valid_gid = 0
            mail_location = maildir:~/Maildir
            {self.settings}
            {identity}
            passdb {{
              driver = passwd-file
              args = scheme=PLAIN {root}/passwd
            }}
            userdb {{
              driver = static
              args = {userdb}
            }}
            service imap-login {{
              {login_chroot}
              inet_listener imap {{
                address = 127.0.0.1
                port = {self.imap_port}
              }}
              inet_listener imaps {{
                address = 127.0.0.1
                port = {self.imaps_port}
                ssl = yes
              }}
            }}
            """.replace("\n            ", "\n")
        )

    # --- process --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        binary = dovecot_binary()
        assert binary is not None, dovecot_unavailable()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited at start:\n{self.log.read_text()[-3000:]}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"dovecot did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}"
        )

    def _answers(self) -> bool:
        try:
            with self.box():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()
        # Its children (login, imap) follow the master out; wait for the pid file to go, so
        # a start right after does not find "already running".
        pid_file = self.root / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- what tests use -------------------------------------------------------------------

    def url(self, folder: str = "INBOX", *, starttls: bool = False) -> str:
        scheme, port = ("imap", self.imap_port) if starttls else ("imaps", self.imaps_port)
        return (
            f"{scheme}://{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"
            f"@127.0.0.1:{port}/{quote(folder, safe='')}"
        )

    @contextlib.contextmanager
    def box(self, folder: str = "INBOX") -> Iterator[MailBox]:
        context = ssl.create_default_context(cafile=str(self.cert))
        with MailBox("127.0.0.1", self.imaps_port, timeout=10, ssl_context=context) as box:
            box.login(USER, PASSWORD, initial_folder=None)
            if folder != "INBOX" and not box.folder.exists(folder):
                box.folder.create(folder)
            box.folder.set(folder)
            yield box

    def create_folder(self, folder: str) -> None:
        with self.box(folder):
            pass

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.box(folder) as box:
            box.append(raw, folder)

    def flags(self, folder: str = "INBOX") -> list[set[str]]:
        """Each message's flags, oldest first."""
        with self.box(folder) as box:
            return [set(m.flags) for m in box.fetch("ALL", mark_seen=False, headers_only=True)]
