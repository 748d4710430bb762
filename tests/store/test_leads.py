"""Leads and deals from other systems: matched to one contact, idempotent, rows rejected alone."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from bot.store.db import Database
from bot.store.leads import (
    ContactRef,
    DealFields,
    LeadFields,
    RowRejected,
    find_by_ref,
    import_deal,
    import_lead,
    upsert_deal,
    upsert_lead,
)
from bot.store.models import ChannelIdentity, Contact, Deal

ANN = LeadFields(name="Ann", email="ann@example.com", telegram_id=101, tags=("vip",))


async def _contacts(db: Database) -> list[Contact]:
    async with db.transaction() as session:
        return list((await session.execute(select(Contact).order_by(Contact.id))).scalars())


async def _upsert(db: Database, lead: LeadFields) -> str:
    async with db.transaction() as session:
        _, change = await upsert_lead(session, lead)
    return change


async def test_the_same_lead_twice_is_one_contact_and_unchanged(db: Database) -> None:
    assert await _upsert(db, ANN) == "created"
    [before] = await _contacts(db)

    assert await _upsert(db, ANN) == "unchanged"

    [after] = await _contacts(db)
    assert after.updated_at == before.updated_at  # nothing was written
    assert (after.name, after.email, after.telegram_user_id) == ("Ann", "ann@example.com", 101)


async def test_a_lead_is_matched_by_email_in_any_case(db: Database) -> None:
    await _upsert(db, ANN)

    assert await _upsert(db, LeadFields(email="  ANN@Example.COM ", phone="+1 555")) == "updated"

    [ann] = await _contacts(db)
    assert (ann.email, ann.phone, ann.name) == ("ann@example.com", "+1 555", "Ann")


async def test_a_lead_is_matched_by_telegram_id_when_we_have_no_email(db: Database) -> None:
    await _upsert(db, LeadFields(telegram_id=202, name="Bob"))

    assert await _upsert(db, LeadFields(telegram_id=202, email="bob@example.com")) == "updated"

    [bob] = await _contacts(db)
    assert (bob.name, bob.email, bob.telegram_user_id) == ("Bob", "bob@example.com", 202)


async def test_external_id_matches_first_and_may_move_the_email(db: Database) -> None:
    await _upsert(db, LeadFields(external_id="crm-1", email="old@example.com"))

    moved = LeadFields(external_id="crm-1", email="new@example.com")
    assert await _upsert(db, moved) == "updated"

    [contact] = await _contacts(db)
    assert contact.email == "new@example.com"
    async with db.transaction() as session:
        found = await find_by_ref(session, ContactRef("external_id", "crm-1"))
    assert found is not None and found.id == contact.id


async def test_tags_and_custom_fields_merge_and_left_out_fields_are_kept(db: Database) -> None:
    await _upsert(db, LeadFields(email="c@example.com", tags=("a", "b"), custom={"plan": "pro"}))

    later = LeadFields(email="c@example.com", tags=("b", "c", "c"), custom={"seats": "5"})
    assert await _upsert(db, later) == "updated"
    assert await _upsert(db, later) == "unchanged"

    [contact] = await _contacts(db)
    assert contact.tags == ["a", "b", "c"]
    assert contact.custom_fields == {"plan": "pro", "seats": "5"}
    assert contact.name == "c@example.com"  # no name given: the email stands in


async def test_a_lead_gets_its_email_and_telegram_identities(db: Database) -> None:
    await _upsert(db, ANN)
    await _upsert(db, ANN)

    async with db.transaction() as session:
        rows = (await session.execute(select(ChannelIdentity))).scalars()
        identities = sorted((i.channel, i.address) for i in rows)
    assert identities == [("email", "ann@example.com"), ("telegram", "101")]


async def test_deals_are_matched_by_contact_and_title(db: Database) -> None:
    await _upsert(db, ANN)
    deal = DealFields(
        title="Pilot",
        contact_email="Ann@example.com",
        stage="proposal",
        value=Decimal("1200.50"),
        last_activity_at=datetime(2024, 5, 1, tzinfo=UTC),
    )
    async with db.transaction() as session:
        _, first = await upsert_deal(session, deal)
        _, again = await upsert_deal(session, deal)
        _, moved = await upsert_deal(session, DealFields("Pilot", "ann@example.com", stage="won"))

    assert (first, again, moved) == ("created", "unchanged", "updated")
    async with db.transaction() as session:
        [row] = (await session.execute(select(Deal))).scalars()
    assert (row.stage, row.value, row.last_activity_at) == (
        "won",
        Decimal("1200.50"),
        datetime(2024, 5, 1, tzinfo=UTC),
    )


async def test_a_deal_of_an_unknown_email_is_a_lookup_error(db: Database) -> None:
    async with db.transaction() as session:
        with pytest.raises(LookupError, match=r"nobody@example\.com"):
            await upsert_deal(session, DealFields("Pilot", "nobody@example.com"))


# Imports: a row at a time


async def test_a_row_the_database_refuses_is_rejected_alone(db: Database) -> None:
    await _upsert(db, ANN)
    await _upsert(db, LeadFields(email="bob@example.com", name="Bob"))

    async with db.transaction() as session:
        with pytest.raises(RowRejected, match="another contact already has this telegram_id"):
            # Bob's email with Ann's Telegram id: the unique index refuses it.
            await import_lead(session, LeadFields(email="bob@example.com", telegram_id=101))
        assert await import_lead(session, LeadFields(email="cy@example.com")) == "created"

    by_email = {c.email: c for c in await _contacts(db)}
    assert set(by_email) == {"ann@example.com", "bob@example.com", "cy@example.com"}
    assert by_email["bob@example.com"].telegram_user_id is None


async def test_a_row_naming_two_contacts_is_rejected_not_merged(db: Database) -> None:
    await _upsert(db, ANN)

    async with db.transaction() as session:
        with pytest.raises(RowRejected, match="telegram_id 101 is another contact's"):
            await import_lead(session, LeadFields(email="eve@example.com", telegram_id=101))

    [ann] = await _contacts(db)
    assert ann.email == "ann@example.com"


async def test_an_imported_row_too_long_for_a_column_is_rejected(db: Database) -> None:
    async with db.transaction() as session:
        with pytest.raises(RowRejected, match="name is longer than 200 characters"):
            await import_lead(session, LeadFields(email="d@example.com", name="x" * 201))
    assert await _contacts(db) == []


async def test_an_imported_deal_is_rounded_as_stored_so_it_reimports_unchanged(
    db: Database,
) -> None:
    await _upsert(db, ANN)
    deal = DealFields("Pilot", "ann@example.com", value=Decimal("1.1234567"))

    async with db.transaction() as session:
        assert await import_deal(session, deal) == "created"
    async with db.transaction() as session:
        assert await import_deal(session, deal) == "unchanged"
        with pytest.raises(RowRejected, match="does not fit"):
            await import_deal(session, DealFields("Big", "ann@example.com", value=Decimal(10**9)))
        with pytest.raises(RowRejected, match="import the contacts first"):
            await import_deal(session, DealFields("Pilot", "nobody@example.com"))
