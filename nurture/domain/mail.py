"""Mail that comes back: what one received message is (CONTRACT.md, "Mail that comes back").

A pure reading of one raw RFC 5322 message: a delivery status notification (RFC 3464), a
feedback report (RFC 5965), an auto-reply (RFC 3834 ``Auto-Submitted``, the common
``X-Autoreply`` style headers, or subject and body phrasing in English, Japanese, Chinese,
German, French and Spanish), mail to the unsubscribe address, or a person's message. Which
lead it concerns is decided by the caller from :attr:`MailFacts.references` (matched
against the outbox's Message-IDs) and then :attr:`MailFacts.sender`: that needs the
database. Nothing here keeps the body: only the facts below leave this module.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from typing import Literal
from zoneinfo import ZoneInfo

MailKind = Literal["reply", "auto_reply", "bounce", "complaint", "unsubscribe", "other"]
BounceKind = Literal["hard", "soft"]

# How much of a body is read for phrasing and a return date: an auto-reply says it early.
BODY_READ_CHARS = 4_000

# RFC 3834 values meaning "sent by a machine"; `no` is a person.
_AUTO_SUBMITTED = re.compile(r"^\s*auto-(replied|generated|notified)", re.IGNORECASE)
# Headers auto-responders set (Exchange, Zimbra, cPanel, Yahoo, vacation(1) and others).
_AUTO_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-Auto-Reply",
    "X-Mail-Autoreply",
    "X-Vacation",
)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "auto-reply"})

# Subject phrasing, lower-cased and NFKC-normalised before matching.
_AUTO_SUBJECT = re.compile(
    "|".join(
        (
            r"\bout of (the )?office\b",
            r"\bautomatic reply\b",
            r"\bauto(-| )?reply\b",
            r"\bautoreply\b",
            r"\bauto(-| )?response\b",
            r"^auto:",
            r"\bon (vacation|holiday|leave)\b",
            r"\babsence\b",
            r"\bout-of-office\b",
            r"\babwesenheit",
            r"\bautomatische antwort\b",
            r"\bnicht im büro\b",
            r"\bréponse automatique\b",
            r"\babsent(e)?\b",
            r"\brespuesta automática\b",
            r"\bfuera de la oficina\b",
            r"\bausente\b",
            "自動応答",
            "自動返信",
            "不在",
            "休暇",
            "自动回复",
            "自動回覆",
            "自动答复",
            "休假",
        )
    )
)
# Body phrasing: said by someone away, not by someone answering.
_AUTO_BODY = re.compile(
    "|".join(
        (
            r"\bi am (currently )?(out of (the )?office|away|on (vacation|holiday|leave))",
            r"\bi'm (currently )?(out of (the )?office|away|on (vacation|holiday|leave))",
            r"\blimited access to (my )?e-?mail\b",
            r"\bthis is an automatic(ally generated)? (reply|response|message)\b",
            r"\bnicht im büro\b",
            r"\bbin (ich )?(bis|vom) .{0,40}(abwesend|nicht erreichbar|im urlaub)",
            r"\bich bin (derzeit |zurzeit )?(abwesend|im urlaub|nicht im büro)",
            r"\bje suis (actuellement )?(absent|en congés?|en vacances)",
            r"\babsente? du bureau\b",
            r"\bestoy (actualmente )?(fuera de la oficina|de vacaciones|ausente)",
            "不在にして",
            # "I am taking leave" (present), not "I will take leave over New Year" (a
            # person's reply planning a meeting before it).
            "休暇を(いただいて|頂いて|取得して|取って)お",
            "休暇中",
            "出張中",
            "我目前不在",
            "不在办公室",
            "正在休假",
            "休假中",
        )
    )
)
# Saying one will be away is what an auto-reply says, and also what a person answering
# says when planning a meeting ("I will be on holiday from the 21st; can we talk before?"):
# it counts only in a message that is not a reply by its subject.
_AWAY_LATER = re.compile(
    "|".join(
        (
            r"\bi will be (out of (the )?office|away|on (vacation|holiday|leave))",
            r"\bje serai (absent|de retour)",
            r"\bestaré (fuera|de vacaciones|ausente)",
        )
    )
)
# The prefixes mail clients put before the subject of a reply (Re, AW, SV, RIF, 回复...).
_REPLY_SUBJECT = re.compile(
    r"^\s*(re|aw|antw|sv|vs|r|rif|res|ref|réf|wg|回复|答复|回覆)\s*[:：]", re.IGNORECASE
)
# Where a return date is said; the date is looked for in these sentences only, so a date
# quoted from the original message or a signature is not taken for it.
_RETURN_WORDS = re.compile(
    "|".join(
        (
            r"\buntil\b",
            r"\bback\b",
            r"\breturn",
            r"\btill\b",
            r"\bbis\b",
            r"\bzurück\b",
            r"\bwieder\b",
            r"\bjusqu",
            r"\bretour\b",
            r"\bhasta\b",
            r"\bregreso\b",
            r"\bvolver",
            "まで",
            "戻",
            "以降",
            "返回",
            "回来",
            "之前",
            "至",
        )
    )
)
_CJK_DATE = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*(?:日|号)")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
# Day.month.[year], as German (and Outlook in many locales) writes dates: 15.12.2026, 15.12.
_DOTTED_DATE = re.compile(r"\b(\d{1,2})\.\s?(\d{1,2})\.(?:\s?(\d{4})\b)?")
# A sentence ends at . ! ? followed by a space (not the dot of a date: "15.12.2026",
# "ab dem 8.1. bin ich"), or at CJK punctuation or a line break.
_SENTENCE = re.compile(r"(?<!\d\.\d\.)(?<!\d\.\d\d\.)(?<=[.!?])\s+|(?<=[。！？\n])\s*")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_UNSUBSCRIBE = re.compile(r"^\s*unsubscribe\b", re.IGNORECASE)
_LANGUAGES = ["en", "ja", "zh", "de", "fr", "es"]


@dataclass(frozen=True)
class MailFacts:
    """What a received message is, and what ties it to a lead; never its body."""

    kind: MailKind
    message_id: str | None
    sender: str | None
    subject: str
    # Message-IDs this message answers or reports on, nearest first: In-Reply-To and
    # References, or the original message's id quoted in a bounce or complaint.
    references: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    # Bounces: hard (5.x.x) or soft (4.x.x), the status code and the address that failed.
    bounce_kind: BounceKind | None = None
    status: str | None = None
    # The address a bounce or complaint is about (Final-Recipient, or the reported To).
    address: str | None = None
    # Auto-replies: the return date in words (looked up in the lead's zone by return_date).
    return_phrases: tuple[str, ...] = field(default=())
    why: str = ""


def parse(raw: bytes) -> EmailMessage:
    """The message, read with the standard library's modern policy."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _address(value: str | None) -> str | None:
    if not value:
        return None
    address = parseaddr(str(value))[1].strip().lower()
    return address or None


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", str(value or ""))


def _text(message: Message, limit: int = BODY_READ_CHARS) -> str:
    """The first text part's content (plain preferred), at most ``limit`` characters."""
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        content = re.sub(r"<[^>]+>", " ", content)
    return content[:limit]


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def _report_parts(message: EmailMessage, report_type: str) -> list[Message] | None:
    if message.get_content_type() != "multipart/report":
        return None
    if message.get_param("report-type", header="content-type") != report_type:
        return None
    return list(message.iter_parts())


def _fields(part: Message) -> list[dict[str, str]]:
    """The field groups of a ``message/delivery-status`` or ``message/feedback-report``
    part (blank-line separated ``Name: value`` lines)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # The email package reads delivery-status as a list of header blocks.
        return [{k.lower(): str(v) for k, v in block.items()} for block in payload]
    text = payload if isinstance(payload, str) else ""
    groups: list[dict[str, str]] = []
    for block in re.split(r"\r?\n\s*\r?\n", text):
        group: dict[str, str] = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if sep and not name.startswith((" ", "\t")):
                group[name.strip().lower()] = value.strip()
        if group:
            groups.append(group)
    return groups


def _original_ids(parts: list[Message]) -> list[str]:
    """The Message-ID of the returned original (``message/rfc822`` or
    ``text/rfc822-headers``), where the report includes it."""
    for part in parts[2:] if len(parts) > 2 else parts[1:]:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                return _ids(inner.get("Message-ID"))
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload(decode=True)
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            found = re.search(r"^message-id:\s*(<[^>\s]+>)", text, re.I | re.M)
            if found:
                return [found.group(1)]
    return []


def _bounce(message: EmailMessage, base: dict[str, object]) -> MailFacts | None:
    parts = _report_parts(message, "delivery-status")
    if parts is None:
        return None
    status_part = next(
        (p for p in parts if p.get_content_type() in ("message/delivery-status",
                                                       "message/global-delivery-status")),
        None,
    )  # fmt: skip
    if status_part is None:
        return None
    recipients = [g for g in _fields(status_part) if "status" in g or "final-recipient" in g]
    failed = next((g for g in recipients if g.get("action", "").lower() == "failed"), None)
    chosen = failed or next(
        (g for g in recipients if g.get("action", "").lower() in ("delayed", "")), None
    )
    if chosen is None:
        # Delivered or relayed: a success report, nothing to act on.
        return MailFacts(kind="other", **base, why="delivery report without a failure")  # type: ignore[arg-type]
    code = _STATUS.search(chosen.get("status", ""))
    status = code.group(0) if code else None
    hard = failed is not None and (status is None or status.startswith("5"))
    address = chosen.get("final-recipient") or chosen.get("original-recipient") or ""
    address = address.split(";", 1)[-1].strip().lower() or None
    return MailFacts(
        kind="bounce",
        **base,  # type: ignore[arg-type]
        references=tuple(_original_ids(parts)),
        bounce_kind="hard" if hard else "soft",
        status=status,
        address=address,
        why=f"delivery status {status or 'failed'}",
    )


def _complaint(message: EmailMessage, base: dict[str, object]) -> MailFacts | None:
    parts = _report_parts(message, "feedback-report")
    if parts is None:
        return None
    report = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    groups = _fields(report) if report is not None else []
    fields = groups[0] if groups else {}
    originals = _original_ids(parts)
    address = _address(fields.get("original-rcpt-to"))
    if address is None:
        for part in parts[2:]:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                address = _address(inner.get("To"))
    return MailFacts(
        kind="complaint",
        **base,  # type: ignore[arg-type]
        references=tuple(originals),
        address=address,
        why=f"feedback report ({fields.get('feedback-type', 'abuse')})",
    )


def _auto_reply_why(message: EmailMessage, subject: str, body: str) -> str | None:
    auto = str(message.get("Auto-Submitted", ""))
    if _AUTO_SUBMITTED.match(auto):
        return f"Auto-Submitted: {auto.strip()}"
    for name in _AUTO_HEADERS:
        value = message.get(name)
        if value is not None and str(value).strip().lower() not in ("no", "false", "0"):
            return f"{name} header"
    if str(message.get("Precedence", "")).strip().lower() in _AUTO_PRECEDENCE:
        return "Precedence: auto_reply"
    if message.get("X-Autoreply-From") or message.get("X-Autogenerated"):
        return "auto-responder header"
    found = _AUTO_SUBJECT.search(_normal(subject))
    if found:
        return f"subject says {found.group(0)!r}"
    text = _normal(body)
    found = _AUTO_BODY.search(text)
    if found is None and not _REPLY_SUBJECT.match(subject):
        found = _AWAY_LATER.search(text)
    if found:
        return f"body says {found.group(0).strip()!r}"
    return None


# Where the writer's own words end and the quoted original begins.
_QUOTE_START = re.compile(
    r"^\s*(>|-{2,}\s*(original|ursprüngliche|message d'origine|mensaje original)"
    r"|on .{0,200} wrote:$|am .{0,200} schrieb .{0,200}:$|le .{0,200} a écrit\s*:$"
    r"|el .{0,200} escribió:$|from: |von: |de: )",
    re.IGNORECASE,
)


def _own_words(body: str) -> str:
    """The body up to the quoted original: a quote says nothing about its writer."""
    kept: list[str] = []
    for line in body.splitlines():
        if _QUOTE_START.match(line):
            break
        kept.append(line)
    return "\n".join(kept)


def _return_phrases(body: str, subject: str) -> tuple[str, ...]:
    text = unicodedata.normalize("NFKC", f"{subject}\n{body}")
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    return tuple(s[:300] for s in sentences if _RETURN_WORDS.search(s.lower()))[:8]


def classify(
    raw: bytes,
    *,
    unsubscribe_addresses: frozenset[str] = frozenset(),
) -> MailFacts:
    """What ``raw`` is. Never raises on a malformed message: it is ``other`` then.

    Args:
        raw: The whole message as received.
        unsubscribe_addresses: The ``mailto:`` addresses of our ``List-Unsubscribe``
            headers (lower case): a message to one of them with the subject
            ``unsubscribe`` unsubscribes its sender.
    """
    message = parse(raw)
    subject = str(message.get("Subject", "") or "")
    recipients = tuple(
        a.lower() for _n, a in getaddresses([str(v) for v in message.get_all("To", [])]) if a
    )
    base: dict[str, object] = {
        "message_id": (_ids(message.get("Message-ID")) or [None])[0],
        "sender": _address(message.get("Reply-To")) or _address(message.get("From")),
        "subject": subject[:500],
        "recipients": recipients,
    }
    for reader in (_bounce, _complaint):
        facts = reader(message, base)
        if facts is not None:
            return facts
    answered = [*reversed(_ids(message.get("In-Reply-To")))]
    answered += reversed(_ids(message.get("References")))
    references = tuple(dict.fromkeys(answered))
    base["references"] = references
    if _UNSUBSCRIBE.match(subject) and set(recipients) & unsubscribe_addresses:
        return MailFacts(kind="unsubscribe", **base, why="mail to the unsubscribe address")  # type: ignore[arg-type]
    body = _own_words(_text(message))
    why = _auto_reply_why(message, subject, body)
    if why is not None:
        return MailFacts(
            kind="auto_reply",
            **base,  # type: ignore[arg-type]
            return_phrases=_return_phrases(body, subject),
            why=why,
        )
    return MailFacts(kind="reply", **base, why="a person's message")  # type: ignore[arg-type]


def return_date(facts: MailFacts, zone: str, now: datetime) -> date | None:
    """The day an auto-reply says its sender is back, read in the lead's zone.

    Only dates after ``now`` and within a year count (a date in a signature, or a year
    misread, must not hold a lead for ever). The first such date of the first sentence
    that names a return wins.
    """
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    horizon = local_now.date() + timedelta(days=366)
    for sentence in facts.return_phrases:
        for found in _dates_in(sentence, local_now):
            if local_now.date() < found <= horizon:
                return found
    return None


def _dates_in(sentence: str, local_now: datetime) -> list[date]:
    found: list[date] = []
    for match in _CJK_DATE.finditer(sentence):
        candidate = _day_of(match.group(1), match.group(2), match.group(3), local_now)
        if candidate is not None:
            found.append(candidate)
    for match in _DOTTED_DATE.finditer(sentence):
        candidate = _day_of(match.group(3), match.group(2), match.group(1), local_now)
        if candidate is not None:
            found.append(candidate)
    for match in _ISO_DATE.finditer(sentence):
        candidate = _safe_date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if candidate is not None:
            found.append(candidate)
    if found:
        return found
    from dateparser.search import search_dates  # heavy: loaded on the first auto-reply

    settings = {
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": local_now.replace(tzinfo=None),
        "DATE_ORDER": "DMY",
    }
    results = search_dates(sentence, languages=_LANGUAGES, settings=settings)  # type: ignore[arg-type]
    # A match without a digit ("Je", "on Monday") is too often a word misread as a date.
    return [when.date() for text, when in results or [] if re.search(r"\d", text)]


def _day_of(year: str | None, month: str, day: str, local_now: datetime) -> date | None:
    """The date written, or the next one with that month and day when no year is written."""
    candidate = _safe_date(int(year) if year else local_now.year, int(month), int(day))
    if candidate is not None and year is None and candidate < local_now.date():
        candidate = _safe_date(local_now.year + 1, candidate.month, candidate.day)
    return candidate


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def excerpt(raw: bytes, limit: int = 1_000) -> str:
    """The writer's own words (quoted original left out), at most ``limit`` characters:
    what a person sorting unmatched mail needs, and no more of the body."""
    try:
        text = _own_words(_text(parse(raw)))
    except Exception:  # noqa: BLE001 - a message no reader can read has no excerpt
        return ""
    return re.sub(r"\n{3,}", "\n\n", text).strip()[:limit]


def unsubscribe_addresses(*senders: str | None) -> frozenset[str]:
    """The ``mailto:`` addresses our ``List-Unsubscribe`` headers name: the sender's own
    address (``nurture.activities.email`` writes ``mailto:<sender>?subject=unsubscribe``)."""
    found = {_address(sender) for sender in senders if sender}
    return frozenset(a for a in found if a)
