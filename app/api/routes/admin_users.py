"""Administration of user accounts (admin role): list, read, disable / enable, role.

401 without a token, 403 FORBIDDEN for a doctor. Logic lives in app.services.admin_users.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import AdminUser, AdminUsersDep
from app.api.errors import error_responses
from app.errors import Forbidden, LastAdmin, NotAuthenticated, NotFound, ValidationFailed
from app.schemas.admin import AdminUser as AdminUserOut
from app.schemas.admin import AdminUserPage, RoleRequest, UserQuery

router = APIRouter(prefix="/admin/users", tags=["admin"])

UserId = Annotated[int, Path(ge=1, le=2**63 - 1, description="User id")]


_CHANGE = (
    "Recorded in the audit trail; setting the value the account already has changes "
    "nothing and records nothing. 409 LAST_ADMIN when it would leave no active "
    "administrator."
)


@router.get(
    "",
    response_model=AdminUserPage,
    responses=error_responses(NotAuthenticated, Forbidden, ValidationFailed),
    summary="List user accounts",
    description="By id; `q` matches a substring of the email or the name, in any case.",
)
async def list_users(
    _: AdminUser, service: AdminUsersDep, query: Annotated[UserQuery, Query()]
) -> AdminUserPage:
    page = await service.page(query.q or None, query.page, query.page_size)
    return AdminUserPage(
        items=[AdminUserOut.model_validate(user) for user in page.items],
        total=page.total,
        page=query.page,
        page_size=query.page_size,
    )


@router.get(
    "/{id}",
    response_model=AdminUserOut,
    responses=error_responses(NotAuthenticated, Forbidden, NotFound, ValidationFailed),
    summary="One user account",
)
async def read_user(id: UserId, _: AdminUser, service: AdminUsersDep) -> AdminUserOut:
    return AdminUserOut.model_validate(await service.get(id))


@router.post(
    "/{id}/disable",
    response_model=AdminUserOut,
    responses=error_responses(NotAuthenticated, Forbidden, NotFound, LastAdmin, ValidationFailed),
    summary="Disable an account",
    description="Its access and refresh tokens stop working at once; its login answers 403 "
    "ACCOUNT_DISABLED (only after a correct password). " + _CHANGE,
)
async def disable_user(id: UserId, admin: AdminUser, service: AdminUsersDep) -> AdminUserOut:
    return AdminUserOut.model_validate(await service.disable(admin, id))


@router.post(
    "/{id}/enable",
    response_model=AdminUserOut,
    responses=error_responses(NotAuthenticated, Forbidden, NotFound, ValidationFailed),
    summary="Enable a disabled account",
    description="Its old sessions stay ended: the user logs in again. " + _CHANGE.split(" 409")[0],
)
async def enable_user(id: UserId, admin: AdminUser, service: AdminUsersDep) -> AdminUserOut:
    return AdminUserOut.model_validate(await service.enable(admin, id))


@router.put(
    "/{id}/role",
    response_model=AdminUserOut,
    responses=error_responses(NotAuthenticated, Forbidden, NotFound, LastAdmin, ValidationFailed),
    summary="Grant or revoke the admin role",
    description="Takes effect on the user's next request. " + _CHANGE,
)
async def set_role(
    id: UserId, body: RoleRequest, admin: AdminUser, service: AdminUsersDep
) -> AdminUserOut:
    return AdminUserOut.model_validate(await service.set_role(admin, id, body.role))
