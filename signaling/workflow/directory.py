"""The directory: institutions, departments and staff (names, no patient data)."""

from __future__ import annotations

from records import store
from records.models import Account, Department, Institution
from records.vocab import InstitutionKind, Role
from signaling.workflow.base import Service


class DirectoryService(Service):
    """Look-ups of the community's institutions, departments and accounts."""

    async def departments(self) -> list[tuple[Department, Institution]]:
        """Departments of specialist hospitals that accept requests."""
        return await self.read(
            lambda conn: store.list_departments(
                conn, institution_kind=InstitutionKind.SPECIALIST_HOSPITAL
            )
        )

    async def all_departments(self) -> list[tuple[Department, Institution]]:
        """Every department of every institution."""
        return await self.read(store.list_departments)

    async def institutions(self) -> list[Institution]:
        """Every institution."""
        return await self.read(store.list_institutions)

    async def institution(self, institution_id: str) -> Institution | None:
        """One institution by id."""
        return await self.read(lambda conn: store.get_institution(conn, institution_id))

    async def specialists(self, department_id: str) -> list[Account]:
        """Specialists serving a department."""
        return await self.read(
            lambda conn: store.list_accounts(
                conn, role=Role.SPECIALIST, department_id=department_id
            )
        )

    async def people(self, account_ids: list[str]) -> dict[str, Account]:
        """Staff accounts by id, for names on timelines, lists and rosters."""
        return await self.read(lambda conn: store.get_accounts(conn, account_ids))

    async def account(self, account_id: str) -> Account | None:
        """An account by id."""
        return await self.read(lambda conn: store.get_account(conn, account_id))
