"""An email may name its sender and, when it starts a thread, its subject (approved openers)."""

from __future__ import annotations

from bot.store.models import OutboxItem
from channels.email.compose import Sender, Thread, compose

SENDER = Sender("sales@crm.test", "Acme Sales")


def opener(**meta: str) -> OutboxItem:
    return OutboxItem(
        id=9,
        idempotency_key="draft:3:send",
        conversation_id=1,
        contact_id=1,
        channel="email",
        recipient="ann@prospect.test",
        author="staff",
        text="Hi Ann, congratulations on the Lyon workshop.",
        meta=meta,
    )


def test_a_first_email_goes_out_under_its_owner_s_name_with_its_own_subject() -> None:
    item = opener(from_name="Dana Berg", to_name="Ann Lee", subject="Your  Lyon\tworkshop")

    message = compose(item, Thread(), SENDER, automatic=False)

    assert message["From"] == "Dana Berg <sales@crm.test>"
    assert message["To"] == "Ann Lee <ann@prospect.test>"
    assert message["Subject"] == "Your Lyon workshop"  # as written, no Re:
    assert message["In-Reply-To"] is None and message["Auto-Submitted"] is None


def test_in_a_thread_the_thread_s_subject_and_names_win() -> None:
    thread = Thread("Pricing", "<m1@prospect.test>", ("<m1@prospect.test>",), "Ann L.")
    item = opener(from_name="Dana Berg", to_name="Ann Lee", subject="Your Lyon workshop")

    message = compose(item, thread, SENDER, automatic=False)

    assert message["Subject"] == "Re: Pricing" and message["To"] == '"Ann L." <ann@prospect.test>'
    assert message["From"] == "Dana Berg <sales@crm.test>"


def test_without_names_in_its_meta_an_email_is_from_the_configured_sender() -> None:
    message = compose(opener(), Thread(), SENDER, automatic=True)

    assert message["From"] == "Acme Sales <sales@crm.test>"
    assert message["Subject"] == "A message from Acme Sales"
