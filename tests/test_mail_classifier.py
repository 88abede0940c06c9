"""The classifier of mail that comes back, on a corpus of real-shaped messages.

Each message under ``tests/mail/`` has its expected reading in ``tests/mail/expected.json``;
``test_corpus_accuracy`` reports the share read right (and fails below all of them).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from nurture.domain.mail import MailFacts, classify, return_date

CORPUS = Path(__file__).parent / "mail"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text())
NOW = datetime.fromisoformat(str(EXPECTED.pop("_now")))
UNSUBSCRIBE = frozenset({"hello@acme.example"})


def read(name: str) -> MailFacts:
    return classify((CORPUS / name).read_bytes(), unsubscribe_addresses=UNSUBSCRIBE)


def mismatches(name: str, expected: dict[str, object]) -> list[str]:
    facts = read(name)
    wrong: list[str] = []
    if facts.kind != expected["kind"]:
        wrong.append(f"kind {facts.kind} ({facts.why}), expected {expected['kind']}")
    if "until" in expected:
        got = return_date(facts, str(expected.get("zone", "UTC")), NOW)
        want = date.fromisoformat(str(expected["until"])) if expected["until"] else None
        if got != want:
            wrong.append(f"until {got}, expected {want} (phrases {facts.return_phrases})")
    for key in ("bounce_kind", "address", "sender"):
        if key in expected and getattr(facts, key) != expected[key]:
            wrong.append(f"{key} {getattr(facts, key)!r}, expected {expected[key]!r}")
    if "references" in expected and list(facts.references) != expected["references"]:
        wrong.append(f"references {facts.references}, expected {expected['references']}")
    return wrong


def test_every_corpus_message_has_an_expectation() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert files == sorted(EXPECTED)
    kinds = {str(e["kind"]) for e in EXPECTED.values()}
    assert kinds == {"reply", "auto_reply", "bounce", "complaint", "unsubscribe"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message(name: str) -> None:
    assert mismatches(name, EXPECTED[name]) == []


def test_corpus_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    right = sum(1 for name, exp in EXPECTED.items() if not mismatches(name, exp))
    accuracy = right / len(EXPECTED)
    with capsys.disabled():
        print(f"\nmail classifier: {right}/{len(EXPECTED)} right ({accuracy:.0%})")
    assert accuracy == 1.0


def test_a_person_is_not_an_auto_reply_because_of_a_quoted_phrase() -> None:
    raw = (
        b"From: a@b.example\r\nTo: hello@acme.example\r\nSubject: Re: hi\r\n"
        b"Message-ID: <x@b.example>\r\n\r\nSure, Tuesday works.\r\n\r\n"
        b"> I am out of the office until 14 December 2026.\r\n"
    )
    assert classify(raw).kind == "reply"


def test_auto_submitted_no_is_a_person() -> None:
    raw = b"From: a@b.example\r\nAuto-Submitted: no\r\nSubject: Re: hi\r\n\r\nYes please.\r\n"
    assert classify(raw).kind == "reply"


def test_return_date_in_the_past_or_too_far_is_ignored() -> None:
    past = (
        b"From: a@b.example\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\n"
        b"I am out of the office until 2026-11-02.\r\n"
    )
    far = past.replace(b"2026-11-02", b"2031-01-05")
    assert return_date(classify(past), "UTC", NOW) is None
    assert return_date(classify(far), "UTC", NOW) is None


def test_unsubscribe_needs_our_address() -> None:
    raw = b"From: a@b.example\r\nTo: other@elsewhere.example\r\nSubject: unsubscribe\r\n\r\n.\r\n"
    assert classify(raw, unsubscribe_addresses=UNSUBSCRIBE).kind == "reply"


def test_garbage_is_read_without_raising() -> None:
    for raw in (b"", b"\x00\xff\xfe", b"Content-Type: multipart/report\r\n\r\n--x--"):
        assert classify(raw).kind in ("reply", "other")


def _plain(subject: str, body: str, headers: str = "") -> bytes:
    return (
        f"From: a@b.example\r\nTo: hello@acme.example\r\nSubject: {subject}\r\n{headers}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body.encode()


def test_dotted_dates_are_read_day_first_and_roll_into_next_year() -> None:
    away = _plain(
        "Abwesenheitsnotiz",
        "Ich bin z.B. per Handy erreichbar. Ab dem 8.1. bin ich wieder im Büro.",
        "Auto-Submitted: auto-replied\r\n",
    )
    facts = classify(away)
    assert facts.kind == "auto_reply"
    # 1 December 2026 now: "8.1." is next January, not last.
    assert return_date(facts, "Europe/Berlin", NOW) == date(2027, 1, 8)


def test_japanese_leave_is_an_auto_reply_only_when_said_in_the_present() -> None:
    away = _plain("お知らせ", "誠に勝手ながら、12月14日まで休暇をいただいております。")
    plan = _plain("Re: ご案内", "年末は休暇をいただく予定ですので、その前にお願いします。")
    assert classify(away).kind == "auto_reply"
    assert return_date(classify(away), "Asia/Tokyo", NOW) == date(2026, 12, 14)
    assert classify(plan).kind == "reply"


def test_away_later_is_an_auto_reply_only_outside_a_reply() -> None:
    words = "I will be on vacation until 2026-12-14 with no access to email."
    notice = classify(_plain("Thanks for your message", words))
    answer = classify(_plain("Re: Your Acme trial", words + " Can we talk before?"))
    assert notice.kind == "auto_reply"
    assert return_date(notice, "UTC", NOW) == date(2026, 12, 14)
    assert answer.kind == "reply"
    # Said in the present, it is an auto-reply whatever the subject.
    assert classify(_plain("Re: Your Acme trial", "I am out of the office today.")).kind == (
        "auto_reply"
    )
