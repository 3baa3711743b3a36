"""Password hashing with argon2id (argon2-cffi)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hashes and checks passwords; CPU-heavy, so callers run it off the event loop."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 2):
        """Set the argon2id cost parameters (see README, ``argon2_*`` settings)."""
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # Checked when the user does not exist, so that the answer takes as long
        # as for a wrong password and does not reveal which usernames exist.
        self._dummy = self._hasher.hash("not a password")

    def hash(self, password: str) -> str:
        """Return the argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def check(self, stored: str | None, password: str) -> bool:
        """True if ``password`` matches ``stored`` (None: an unknown user)."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other cost parameters."""
        return self._hasher.check_needs_rehash(stored)
