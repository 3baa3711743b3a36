"""The directory: institutions, departments and staff (names, no patient data)."""

from __future__ import annotations

import sqlalchemy as sa

from records import store
from records.models import Account, Department, Institution
from records.vocab import InstitutionKind, Role
from signaling.errors import NotFound
from signaling.workflow.base import Actor, Service


class DirectoryService(Service):
    """Look-ups of the community's institutions, departments and accounts."""

    async def departments(self) -> list[tuple[Department, Institution]]:
        """Departments of specialist hospitals that accept requests."""
        return await self.read(
            lambda conn: store.list_departments(
                conn, institution_kind=InstitutionKind.SPECIALIST_HOSPITAL
            )
        )

    async def askable(self, actor: Actor) -> list[tuple[Department, Institution]]:
        """The departments ``actor`` may see in the request form's picker.

        A clinic doctor is offered only the hospitals their institution has an
        active agreement with; the other roles see every department that takes
        requests (coordinators and specialists look across the community).
        """
        if actor.role != Role.CLINIC_DOCTOR:
            return await self.departments()
        institution_id = actor.account.institution_id

        def work(conn: sa.Connection) -> list[tuple[Department, Institution]]:
            allowed = store.consulted_institutions(conn, institution_id)
            return [
                (d, i)
                for d, i in store.list_departments(
                    conn, institution_kind=InstitutionKind.SPECIALIST_HOSPITAL
                )
                if i.id in allowed
            ]

        return await self.read(work)

    async def department(self, actor: Actor, department_id: str) -> Department:
        """A department that takes requests; otherwise ``NotFound``, and the probe is audited.

        The directory is open to every user, so a found department is not audited
        (and is read without taking the writer).
        """
        for department, _ in await self.departments():
            if department.id == department_id:
                return department
        await self.audit_refusal(actor, "department", department_id)
        raise NotFound("department not found", probe=("department", department_id))

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
