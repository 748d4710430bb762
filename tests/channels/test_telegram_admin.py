"""Admin /agent commands and confirmation buttons on Telegram."""

from __future__ import annotations

from bot.store.models import AuditEvent, Deal, PendingConfirmation
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import ScriptedModel, call, turn
from tests.support.telegram_rig import ADMIN_ID, STAFF_CHAT, TelegramRig, eventually

STRANGER, ANN, STAFFER, OUTSIDER = 666, 501, 8001, 9009


async def test_commands_appear_in_the_telegram_menu(rig: TelegramRig, fake: FakeTelegram) -> None:
    [call_] = fake.calls_of("setMyCommands")
    assert "agent" in str(call_.params["commands"])


async def test_non_admin_is_refused_and_the_attempt_audited(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(STRANGER, "/agent list", first_name="Eve")
    await eventually(lambda: texts(fake, STRANGER))
    assert texts(fake, STRANGER) == ["Sorry, only admins can use this command."]
    assert rig.app is not None
    await rig.app.refusals.flush()  # refusals are audited as a count per minute
    [event] = await rig.rows(AuditEvent, AuditEvent.kind == "refused")
    assert event.payload["source"] == "telegram:admin_command"
    assert event.payload["samples"] == [{"user": STRANGER, "command": "agent"}]


async def test_admin_lists_agents_and_gets_usage_for_malformed_commands(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(ADMIN_ID, "/agent list", first_name="Boss")
    await eventually(lambda: texts(fake, ADMIN_ID))
    assert "lead-qualifying" in texts(fake, ADMIN_ID)[0]
    fake.user_message(ADMIN_ID, "/agent set lead-qualifying", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 2)
    assert texts(fake, ADMIN_ID)[1].startswith("Usage: /agent set NAME FIELD VALUE")
    fake.user_message(
        ADMIN_ID, "/agent disable trial-onboarding", first_name="Boss", chat_id=STAFF_CHAT
    )
    await eventually(lambda: any("trial-onboarding disabled" in t for t in texts(fake, STAFF_CHAT)))


async def test_only_staff_can_press_confirmation_buttons(
    fake: FakeTelegram, database_url: str
) -> None:
    rig = TelegramRig(fake, database_url)
    await rig.start(
        ScriptedModel(
            turn("", call("update_deal_stage", {"stage": "qualified"}, id="1")),
            turn("", call("update_deal_stage", {"stage": "lost"}, id="2")),
            turn("", call("finish")),
        )
    )
    try:
        fake.user_message(ANN, "we picked another vendor", first_name="Ann")
        [post] = await eventually(
            lambda: [p for p in fake.sent(chat_id=STAFF_CHAT) if "reply_markup" in p]
        )
        assert "Approve" in str(post["reply_markup"])
        message = fake.bot_messages(STAFF_CHAT)[-1]
        [pending] = await rig.rows(PendingConfirmation)
        data = f"confirm:{pending.id}:approve"
        fake.set_member_status(STAFF_CHAT, OUTSIDER, "left")
        fake.callback_query(OUTSIDER, message, data, chat_id=STAFF_CHAT)
        await eventually(lambda: fake.calls_of("answerCallbackQuery"))
        [pending] = await rig.rows(PendingConfirmation)
        assert pending.status == "pending"
        fake.set_member_status(STAFF_CHAT, STAFFER, "member")
        fake.callback_query(STAFFER, message, data, chat_id=STAFF_CHAT)
        await eventually(lambda: len(fake.calls_of("answerCallbackQuery")) == 2)
        [pending] = await rig.rows(PendingConfirmation)
        assert pending.status == "approved"
        [deal] = await rig.rows(Deal)
        assert deal.stage == "lost"
        assert "Approved by" in str(fake.calls_of("editMessageText")[-1].params["text"])
    finally:
        await rig.stop()


async def test_admins_manage_jobs_with_the_jobs_command(
    rig: TelegramRig, fake: FakeTelegram
) -> None:
    fake.user_message(ADMIN_ID, "/jobs", first_name="Boss")
    await eventually(lambda: texts(fake, ADMIN_ID))
    assert texts(fake, ADMIN_ID)[0].startswith("pipeline-hygiene")
    fake.user_message(ADMIN_ID, "/jobs pause pipeline-hygiene", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 2)
    assert texts(fake, ADMIN_ID)[1] == "paused pipeline-hygiene"
    fake.user_message(ADMIN_ID, "/jobs preview 48", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 3)
    assert texts(fake, ADMIN_ID)[2].startswith("In the next 48 h (nothing is sent")
    fake.user_message(ADMIN_ID, "/jobs resume", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 4)
    assert texts(fake, ADMIN_ID)[3] == "resumed pipeline-hygiene"
    fake.user_message(ADMIN_ID, "/jobs explode", first_name="Boss")
    await eventually(lambda: len(texts(fake, ADMIN_ID)) == 5)
    assert texts(fake, ADMIN_ID)[4].startswith("Usage: /jobs list")
    commands = [e.payload for e in await rig.rows(AuditEvent, AuditEvent.kind == "admin_command")]
    assert "/jobs pause pipeline-hygiene" in str(commands)
    fake.user_message(STRANGER, "/jobs resume", first_name="Eve")
    await eventually(lambda: texts(fake, STRANGER))
    assert texts(fake, STRANGER) == ["Sorry, only admins can use this command."]
