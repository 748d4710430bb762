"""Real mail servers on 127.0.0.1 for the email channel's tests.

- `Dovecot`: Debian's dovecot-imapd, started from a config written into a temporary directory
  (plain-text auth, no TLS, Maildir), with a pool of test users so that each test gets an empty
  mailbox of its own without restarting the server. Mail is delivered with IMAP APPEND.
- `SmtpSink`: aiosmtpd on a free port, capturing what it accepts; it can refuse (4xx/5xx), hang
  up after the message data, or be stopped for a while.
- `make_mail`: a prospect's email as bytes.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bot.store.types import utcnow

OUR_ADDRESS = "sales@crm.test"
USERS = 120
PASSWORD = "secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError("dovecot did not start listening within 10 s")


@dataclass
class MailUser:
    name: str
    password: str = PASSWORD


class Dovecot:
    """A Dovecot IMAP server of our own; `idle=False` hides IDLE to exercise polling."""

    def __init__(self, *, idle: bool = True, certificate: tuple[Path, Path] | None = None) -> None:
        self.idle = idle
        self.certificate = certificate
        """With a (certificate, key): implicit TLS only, as on port 993."""
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dc-", dir="/tmp"))  # short: socket paths
        self.dir.chmod(0o755)
        self.config = self.dir / "dovecot.conf"
        self.log = self.dir / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._next_user = 0

    @staticmethod
    def binary(name: str = "dovecot") -> str | None:
        """Where Debian puts it (/usr/sbin is not on every user's PATH), or on the PATH."""
        for folder in ("/usr/sbin", "/usr/bin"):
            if os.access(f"{folder}/{name}", os.X_OK):
                return f"{folder}/{name}"
        return shutil.which(name)

    @classmethod
    def available(cls) -> bool:
        return cls.binary() is not None

    def _accounts(self) -> tuple[str, str, str]:
        """(login user, internal user, mail user): Dovecot refuses root for all three."""
        if os.geteuid() == 0:
            return "dovenull", "dovecot", "dovecot"
        me = pwd.getpwuid(os.geteuid()).pw_name
        return me, me, me

    def _write_config(self) -> None:
        login, internal, mail = self._accounts()
        mail_root = self.dir / "mail"
        mail_root.mkdir(exist_ok=True)
        uid = pwd.getpwnam(mail).pw_uid
        if os.geteuid() == 0:
            os.chown(mail_root, uid, pwd.getpwnam(mail).pw_gid)
        (self.dir / "passwd").write_text(
            "".join(f"user{n:03d}:{{PLAIN}}{PASSWORD}::::::\n" for n in range(USERS))
        )
        capability = "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n"
        if self.certificate is None:
            tls, plain_port, tls_port = "ssl = no", self.port, 0
        else:
            cert, key = self.certificate
            tls = f"ssl = required\nssl_cert = <{cert}\nssl_key = <{key}"
            plain_port, tls_port = 0, self.port
        self.config.write_text(
            f"""base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
{tls}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{mail_root}/%u
first_valid_uid = 1
default_login_user = {login}
default_internal_user = {internal}
default_internal_group = {internal}
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={pwd.getpwnam(mail).pw_gid} home={self.dir}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""
        )

    def start(self) -> None:
        for _ in range(3):
            self._write_config()
            self.process = subprocess.Popen(
                [self.binary() or "dovecot", "-F", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_for_port(self.port, self.process, self.log)
                return
            except RuntimeError:
                # The free port can be taken before Dovecot binds it (by another test
                # process's server, or as the local port of an outgoing connection).
                if "Address already in use" not in self._log_text():
                    raise
                self.port = free_port()
        raise RuntimeError(f"dovecot found no free port: {self._log_text()}")

    def _log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def halt(self) -> None:
        """Stop the server and keep its mail, to `start()` it again on the same port (a
        restart, or an outage of the length the caller waits)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_user(self) -> MailUser:
        """A user whose mailbox no other test has touched."""
        if self._next_user >= USERS:
            raise RuntimeError(f"more than {USERS} mail users in one test session")
        self._next_user += 1
        return MailUser(f"user{self._next_user - 1:03d}")

    def kick(self, user: MailUser) -> None:
        """Drop the user's IMAP connections, as a server restart would."""
        subprocess.run(
            [self.binary("doveadm") or "doveadm", "-c", str(self.config), "kick", user.name],
            check=True,
            capture_output=True,
        )

    def trust(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate."""
        assert self.certificate is not None
        return ssl.create_default_context(cafile=str(self.certificate[0]))

    @contextlib.contextmanager
    def session(self, user: MailUser) -> Any:
        client = (
            imaplib.IMAP4("127.0.0.1", self.port)
            if self.certificate is None
            else imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=self.trust())
        )
        try:
            client.login(user.name, user.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def deliver(self, user: MailUser, *mails: bytes, mailbox: str = "INBOX") -> None:
        """Put mails into the user's mailbox (IMAP APPEND), unseen."""
        with self.session(user) as client:
            for raw in mails:
                status, detail = client.append(mailbox, None, None, raw)
                assert status == "OK", detail

    def seen(self, user: MailUser, mailbox: str = "INBOX") -> int:
        """How many messages of the mailbox are flagged \\Seen."""
        with self.session(user) as client:
            client.select(mailbox, readonly=True)
            _, data = client.uid("SEARCH", "SEEN")
            return len(data[0].split()) if data and data[0] else 0

    def recreate(self, user: MailUser, mailbox: str) -> None:
        """Delete and create `mailbox` again: it gets a new UIDVALIDITY."""
        with self.session(user) as client:
            client.delete(mailbox)
            client.create(mailbox)

    def create(self, user: MailUser, mailbox: str) -> None:
        with self.session(user) as client:
            client.create(mailbox)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (made with the openssl command), and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Received:
    """One message the SMTP sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        return str(part.get_content())  # type: ignore[attr-defined]


@dataclass
class SmtpSink:
    """An SMTP server that keeps what it accepts, and misbehaves on request."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    rcpt_reply: str | None = None
    """Answer RCPT with this (e.g. "550 5.1.1 No such user") instead of accepting."""
    data_reply: str | None = None
    """Answer the message data with this (e.g. "451 4.3.0 Try again later")."""
    hang_up_after_data: bool = False
    """Take the message, then drop the connection before answering."""
    tls: str = "none"
    """`implicit` (TLS from the first byte), `starttls` (required), or `none`."""
    certificate: tuple[Path, Path] | None = None
    """(certificate, key) for TLS."""
    controller: Controller | None = None

    def start(self) -> None:
        options: dict[str, Any] = {}
        if self.tls != "none":
            assert self.certificate is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
            if self.tls == "implicit":
                options["ssl_context"] = context
            else:
                options |= {"tls_context": context, "require_starttls": True}
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.sink.rcpt_reply:
            return self.sink.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.sink.data_reply:
            return self.sink.data_reply
        self.sink.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        if self.sink.hang_up_after_data:
            server.transport.close()
        return "250 2.0.0 Queued"


def make_mail(
    body: str = "Hi, what does your CRM cost for a team of 12?",
    *,
    sender: str = "Ann Lee <ann@prospect.test>",
    subject: str = "Pricing question",
    to: str = OUR_ADDRESS,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    """A well-formed email; `html` alone (body="") makes an HTML-only mail."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id or make_msgid(domain="prospect.test")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    if body:
        message.set_content(body)
        if html:
            message.add_alternative(html, subtype="html")
    elif html:
        message.set_content(html, subtype="html")
    for name, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=policy.SMTP)
