"""The fake Telegram speaks the Bot API as the real python-telegram-bot expects it.

Every test drives the real `telegram.Bot` (or `Application`) over HTTP against the fake, so
what passes here is what the Telegram channel's tests can rely on.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberRestricted,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import Application, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest

from tests.support.fake_telegram import FakeTelegram

USER = 1001
STAFF = -1001234567890
KEYBOARD = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
UNDO = InlineKeyboardMarkup([[InlineKeyboardButton("Undo", callback_data="undo")]])


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url
    ) as telegram_bot:
        yield telegram_bot


async def test_get_me_reports_the_bot_user(bot: Bot, fake: FakeTelegram) -> None:
    me = await bot.get_me()

    assert (me.id, me.username, me.is_bot) == (123456789, "crm_test_bot", True)
    assert fake.calls[0].method == "getMe"


async def test_a_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("42:wrong", base_url=fake.base_url):
            pass


async def test_an_unknown_method_is_not_found(bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendTelepathy", api_kwargs={"chat_id": USER})


async def test_send_message_returns_the_message_and_records_the_wire_parameters(
    bot: Bot, fake: FakeTelegram
) -> None:
    incoming = fake.user_message(USER, "hi", first_name="Ann")["message"]

    first = await bot.send_message(USER, "123", reply_markup=KEYBOARD)
    second = await bot.send_message(
        USER, "<b>Hello</b> &amp; welcome", parse_mode=ParseMode.HTML, reply_to_message_id=1
    )

    assert (first.text, first.chat.id, first.from_user and first.from_user.id) == (
        "123",
        USER,
        bot.id,
    )
    assert first.message_id == incoming["message_id"] + 1 == second.message_id - 1
    assert first.reply_markup == KEYBOARD
    assert second.text == "Hello & welcome"
    assert second.reply_to_message and second.reply_to_message.text == "hi"
    params = fake.sent(chat_id=USER)
    assert params[0] == {"chat_id": USER, "text": "123", "reply_markup": KEYBOARD.to_dict()}
    assert params[1]["parse_mode"] == "HTML"
    assert params[1]["reply_parameters"] == {"message_id": 1}


async def test_retry_after_surfaces_as_retry_after(
    bot: Bot, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # else reading retry_after warns
    fake.fail_next("sendMessage", 429, retry_after=7)

    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "hello")

    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    assert fake.sent() == []
    await bot.send_message(USER, "hello")
    assert len(fake.sent()) == 1


async def test_a_blocked_user_is_forbidden(bot: Bot, fake: FakeTelegram) -> None:
    fake.set_blocked(USER)

    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER, "hello")


async def test_scripted_server_errors_map_to_ptb_errors(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", 403)
    fake.fail_next("sendMessage", 502, times=2)

    with pytest.raises(Forbidden):
        await bot.send_message(USER, "a")
    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(USER, "a")
    assert (await bot.send_message(USER, "a")).text == "a"


@pytest.mark.parametrize(
    ("text", "parse_mode", "problem"),
    [
        ("<b>unclosed", ParseMode.HTML, "end tag"),
        ("<blink>x</blink>", ParseMode.HTML, "Unsupported start tag"),
        ("Thanks. See you!", ParseMode.MARKDOWN_V2, "reserved"),
        ("*bold", ParseMode.MARKDOWN_V2, "Bold"),
    ],
)
async def test_unparsable_formatting_is_a_bad_request(
    bot: Bot, fake: FakeTelegram, text: str, parse_mode: str, problem: str
) -> None:
    with pytest.raises(BadRequest, match="parse entities") as caught:
        await bot.send_message(USER, text, parse_mode=parse_mode)

    assert problem.lower() in caught.value.message.lower()
    assert fake.sent() == []


async def test_escaped_markdown_v2_is_accepted_and_shown_plain(bot: Bot) -> None:
    message = await bot.send_message(
        USER, r"*Thanks\.* See `x.y` and [the docs](https://example.com/a\)b)\!", "MarkdownV2"
    )

    assert message.text == "Thanks. See x.y and the docs!"


async def test_a_too_long_message_is_a_bad_request(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="too long"):
        await bot.send_message(USER, "x" * 4097)
    assert (await bot.send_message(USER, "x" * 4096)).text == "x" * 4096


async def test_forum_topics_are_created_used_and_deleted(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_supergroup(STAFF, "Staff")
    incoming = fake.user_message(USER, "need help")["message"]

    topic = await bot.create_forum_topic(STAFF, "Ann (#1001)")
    sent = await bot.send_message(STAFF, "new lead", message_thread_id=topic.message_thread_id)
    copied = await bot.copy_message(
        STAFF, USER, incoming["message_id"], message_thread_id=topic.message_thread_id
    )
    fake.delete_topic(STAFF, topic.message_thread_id)

    assert topic.name == "Ann (#1001)"
    assert sent.is_topic_message and sent.message_thread_id == topic.message_thread_id
    assert copied.message_id == sent.message_id + 1
    assert fake.bot_messages(STAFF)[-1]["text"] == "need help"
    assert [p.get("text") for p in fake.sent(STAFF, topic.message_thread_id)] == [
        "new lead",
        None,
    ]
    with pytest.raises(BadRequest, match="thread not found"):
        await bot.send_message(STAFF, "again", message_thread_id=topic.message_thread_id)
    with pytest.raises(BadRequest, match="thread not found"):
        await bot.copy_message(
            STAFF, USER, incoming["message_id"], message_thread_id=topic.message_thread_id
        )


async def test_topics_need_a_forum(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_supergroup(STAFF, "Staff", is_forum=False)

    with pytest.raises(BadRequest, match="not a forum"):
        await bot.create_forum_topic(STAFF, "Ann")


async def test_long_poll_returns_as_soon_as_an_update_arrives(bot: Bot, fake: FakeTelegram) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    fake.user_message(USER, "/start", first_name="Ann", username="ann")

    updates = await poll

    assert time.monotonic() - started < 1.5
    message = updates[0].message
    assert message and message.text == "/start" and message.chat.type == "private"
    assert message.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 6),)
    assert message.from_user and message.from_user.username == "ann"


async def test_an_offset_confirms_earlier_updates(bot: Bot, fake: FakeTelegram) -> None:
    fake.user_message(USER, "one")
    fake.user_message(USER, "two")

    first = await bot.get_updates(limit=1)
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    after = await bot.get_updates(offset=rest[-1].update_id + 1)

    assert [u.message.text for u in first + rest if u.message] == ["one", "two"]
    assert after == ()


async def test_an_application_polls_and_replies(fake: FakeTelegram) -> None:
    replied = asyncio.Event()

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message and update.message.text
        await update.message.reply_text(f"echo: {update.message.text}")
        replied.set()

    application = Application.builder().token(fake.token).base_url(fake.base_url).build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    await application.initialize()
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(poll_interval=0, timeout=1)
    try:
        fake.user_message(USER, "ping", first_name="Ann")
        await asyncio.wait_for(replied.wait(), 3)
    finally:
        await application.updater.stop()
        await application.stop()
        await application.shutdown()

    assert fake.sent(chat_id=USER)[0]["text"] == "echo: ping"
    assert fake.pending == []


async def test_webhook_round_trip(bot: Bot, fake: FakeTelegram) -> None:
    await bot.set_webhook("https://crm.example.com/tg", secret_token="s3cret")
    info = await bot.get_webhook_info()
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    registered = fake.webhook
    await bot.delete_webhook(drop_pending_updates=True)

    assert (info.url, registered.secret_token) == ("https://crm.example.com/tg", "s3cret")
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates() == ()


async def test_webhook_post_delivers_with_the_secret_header(fake: FakeTelegram) -> None:
    received: list[tuple[str | None, dict[str, object]]] = []

    async def endpoint(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response()

    app = web.Application()
    app.router.add_post("/tg", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        update = fake.user_message(USER, "via webhook")
        status = await fake.webhook_post(f"http://{host}:{port}/tg", update, secret="s3cret")
    finally:
        await runner.cleanup()

    assert status == 200
    assert received == [("s3cret", update)]
    assert fake.pending == []


async def test_a_slow_answer_times_out_after_the_send_happened(fake: FakeTelegram) -> None:
    fake.delay_next("sendMessage", 2)
    request = HTTPXRequest(read_timeout=0.2)

    async with Bot(fake.token, base_url=fake.base_url, request=request) as slow_bot:
        with pytest.raises(TimedOut):
            await slow_bot.send_message(USER, "hello")

    assert [p["text"] for p in fake.sent(USER)] == ["hello"]


async def test_callback_queries_and_edits(bot: Bot, fake: FakeTelegram) -> None:
    question = await bot.send_message(USER, "Book a call?", reply_markup=KEYBOARD)
    fake.callback_query(USER, question.message_id, "yes")

    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query and query.data == "yes" and query.message
    await query.answer("Booked")
    rekeyed = await bot.edit_message_reply_markup(USER, question.message_id, reply_markup=UNDO)
    edited = await bot.edit_message_text("Booked.", USER, question.message_id)

    assert query.message.message_id == question.message_id
    assert isinstance(rekeyed, Message) and rekeyed.reply_markup == UNDO and rekeyed.edit_date
    # As in Telegram, editing the text without a reply_markup removes the keyboard.
    assert isinstance(edited, Message) and edited.text == "Booked." and edited.reply_markup is None
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer()
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text("Booked.", USER, question.message_id)


async def test_media_contact_and_topic_messages_parse(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_supergroup(STAFF, "Staff")
    topic = fake.add_topic(STAFF, "Ann")
    fake.user_message(USER, photo=b"jpeg-bytes", caption="look")
    fake.user_message(USER, document=("quote.pdf", b"%PDF"))
    fake.user_message(USER, contact="+15550100")
    fake.user_message(7, "take it", chat_id=STAFF, message_thread_id=topic["message_thread_id"])

    photo, document, contact, staff = [u.message for u in await bot.get_updates()]

    assert photo and photo.caption == "look"
    file = await photo.photo[-1].get_file()
    assert await file.download_as_bytearray() == bytearray(b"jpeg-bytes")
    assert document and document.document and document.document.mime_type == "application/pdf"
    assert contact and contact.contact and contact.contact.user_id == USER
    assert staff and staff.is_topic_message and staff.chat.is_forum
    assert staff.message_thread_id == topic["message_thread_id"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("creator", ChatMemberOwner),
        ("administrator", ChatMemberAdministrator),
        ("member", ChatMemberMember),
        ("restricted", ChatMemberRestricted),
        ("left", ChatMemberLeft),
        ("kicked", ChatMemberBanned),
    ],
)
async def test_chat_member_status_is_configurable(
    bot: Bot, fake: FakeTelegram, status: str, kind: type
) -> None:
    fake.set_member_status(STAFF, USER, status)

    member = await bot.get_chat_member(STAFF, USER)

    assert isinstance(member, kind) and member.user.id == USER


async def test_a_user_blocking_the_bot_arrives_as_my_chat_member(
    bot: Bot, fake: FakeTelegram
) -> None:
    fake.my_chat_member(USER, "kicked")

    (update,) = await bot.get_updates(allowed_updates=["my_chat_member"])

    change = update.my_chat_member
    assert change and change.new_chat_member.status == "kicked"
    assert change.old_chat_member.status == "member"
    with pytest.raises(Forbidden):
        await bot.send_message(USER, "still there?")


async def test_commands_round_trip(bot: Bot, fake: FakeTelegram) -> None:
    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("help", "Help")])

    commands = await bot.get_my_commands()

    assert [c.command for c in commands] == ["start", "help"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad Command", "x")])


async def test_chat_actions_are_recorded_with_their_time(bot: Bot, fake: FakeTelegram) -> None:
    before = time.monotonic()
    await bot.send_chat_action(USER, "typing")

    (call,) = fake.calls_of("sendChatAction")
    assert call.params == {"chat_id": USER, "action": "typing"}
    assert before <= call.at <= time.monotonic()
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await bot.send_chat_action(USER, "dancing")


async def test_a_second_poller_ends_the_first_with_a_conflict(bot: Bot, fake: FakeTelegram) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)

    async with Bot(fake.token, base_url=fake.base_url) as second_instance:
        await second_instance.get_updates(timeout=0)

    with pytest.raises(Conflict, match=r"(?i)terminated by other getupdates"):
        await first
