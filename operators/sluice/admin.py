"""The chart's admin user: the login is always the one in the chart's Secret.

The create-user Job runs this (``sluice admin-user``). It goes through the FAB provider's own application
builder, as ``airflow users create`` does, but is idempotent both ways: a missing user is created, an
existing one gets the Secret's password and the Admin role back. Any failure exits non-zero, so the Job
fails where a user can see it instead of handing out a password nothing checks.
"""

from __future__ import annotations

import time
from typing import Literal

from sluice.errors import SluiceError

Outcome = Literal["created", "updated", "unchanged"]
ADMIN_ROLE = "Admin"


class AdminUserError(SluiceError, RuntimeError):
    """The admin user could not be created or updated; the message says why."""


def ensure_admin(username: str, password: str, email: str | None = None) -> Outcome:
    """Create ``username`` with the Admin role and ``password``, or bring an existing user to that state."""
    if not password:
        raise AdminUserError("the admin password is empty: the chart's admin Secret needs a non-empty `password`")
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        role = sm.find_role(ADMIN_ROLE)
        if role is None:
            raise AdminUserError(f"FAB has no {ADMIN_ROLE!r} role: has `airflow db migrate` run on this database?")
        user = sm.find_user(username=username)
        if user is None:
            if not sm.add_user(username, "Sluice", "Admin", email or f"{username}@example.com", role, password):
                raise AdminUserError(f"FAB refused to create user {username!r} (see the log above)")
            return "created"
        outcome: Outcome = "unchanged"
        if not sm.check_password(username, password):
            if not sm.reset_password(user.id, password):
                raise AdminUserError(f"FAB could not set the password of user {username!r}")
            outcome = "updated"
        if role not in user.roles or not user.active:
            if role not in user.roles:
                user.roles.append(role)
            user.active = True
            if not sm.update_user(user):
                raise AdminUserError(f"FAB could not make user {username!r} an active {ADMIN_ROLE}")
            outcome = "updated"
        return outcome


def ensure_admin_when_ready(username: str, password: str, timeout: float = 300.0) -> Outcome:
    """``ensure_admin``, retried while the database is not reachable yet (a Job may start before it)."""
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return ensure_admin(username, password)
        except OperationalError as exc:
            if time.monotonic() > deadline:
                raise AdminUserError(f"the metadata database did not answer within {timeout:.0f} s: {exc}") from exc
            time.sleep(5)
