"""Prospects on Telegram, end to end through python-telegram-bot and the fake Bot API."""

from __future__ import annotations

import asyncio

from agents.messages import ModelRequest, ModelTurn
from bot.store.models import Contact
from tests.channels.conftest import texts
from tests.support.fake_telegram import FakeTelegram
from tests.support.models import FunctionModel, turn
from tests.support.telegram_rig import TelegramRig, eventually

ANN = 501


async def test_prospect_messages_get_agent_replies(rig: TelegramRig, fake: FakeTelegram) -> None:
    fake.user_message(ANN, "/start ad-campaign-7", first_name="Ann", username="ann_k")
    await eventually(lambda: texts(fake, ANN))
    assert texts(fake, ANN)[0].endswith("What would you like crmbot to help your business with?")
    fake.user_message(ANN, "Tracking leads from our website", first_name="Ann")
    await eventually(lambda: len(texts(fake, ANN)) == 2)
    assert texts(fake, ANN)[1] == "Thanks! How many people are on your team?"
    [contact] = await rig.rows(Contact)
    assert (contact.name, contact.telegram_username, contact.telegram_user_id) == (
        "Ann",
        "ann_k",
        ANN,
    )
    assert contact.lead_source == "ad-campaign-7"
    assert contact.custom_fields == {"need": "Tracking leads from our website"}


async def test_a_slow_answer_shows_typing_while_the_agent_works(
    fake: FakeTelegram, database_url: str
) -> None:
    async def slow(request: ModelRequest) -> ModelTurn:
        await asyncio.sleep(1.5)
        return turn("Here is what I found.")

    rig = TelegramRig(fake, database_url)
    await rig.start(FunctionModel(slow))
    try:
        fake.user_message(ANN, "hello", first_name="Ann")
        await eventually(lambda: texts(fake, ANN))
        typing = fake.calls_of("sendChatAction")
        assert typing and typing[0].params == {"chat_id": ANN, "action": "typing"}
    finally:
        await rig.stop()
