"""The account governor's activities: a touch's slot, and telling held leads to ask again.

The decision is pure (:mod:`nurture.domain.governor`), the reservation is a transaction in
the app database (:mod:`nurture.services.accounts`); these activities only wire them.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from nurture.adapters.secrets import app_key
from nurture.domain import messages as am
from nurture.domain.names import SIGNAL_ACCOUNT_RELEASED, workflow_id
from nurture.services import accounts
from nurture.settings import Settings

# The purpose the keyed hash of an address is derived for (see accounts.person_key).
PERSON_PURPOSE = "person"


class AccountActivities:
    """The account governor, with the app database and a Temporal client injected."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        client: Client | None = None,
    ) -> None:
        """Wire the activities.

        Args:
            settings: the worker's settings (the app secret keys the person hash).
            sessions: the app database.
            client: signals held leads when a conversation ends; None tells nobody (their
                backstop re-check still comes).
        """
        self.settings = settings
        self.sessions = sessions
        self.client = client

    @activity.defn(name=am.RESERVE_TOUCH)
    async def reserve_touch(self, request: am.ReserveTouchInput) -> am.ReserveTouchResult:
        """May this touch go now (its grant recorded), else until when and why."""
        secret = await app_key(self.settings, self.sessions, PERSON_PURPOSE)
        async with self.sessions() as session:
            reservation = await accounts.reserve(session, secret, request)
        return reservation.result

    @activity.defn(name=am.RELEASE_ACCOUNT)
    async def release_account(self, request: am.ReleaseAccountInput) -> am.ReleaseAccountResult:
        """Signal the account's other leads in a touch stage: a touch held for this lead's
        conversation asks again (one that holds nothing ignores it). Idempotent: a repeated
        signal only makes a held lead ask again."""
        async with self.sessions() as session:
            leads = await accounts.held_leads(session, request.lead_id)
        if self.client is None:
            return am.ReleaseAccountResult()
        told = 0
        for lead_id in leads:
            # A lead whose workflow is gone (completed, not started yet) holds nothing.
            with contextlib.suppress(RPCError):
                await self.client.get_workflow_handle(workflow_id(lead_id)).signal(
                    SIGNAL_ACCOUNT_RELEASED, request.lead_id
                )
                told += 1
        return am.ReleaseAccountResult(told=told)
