"""Everything a route gets from the application, in one place: the typed ``AppState`` the
lifespan builds, and the ``Annotated`` dependencies every router declares.

A route that needs one thing asks for it (``ServiceDep``, ``RepoDep``, ...); one that needs
several asks for ``StateDep``: one dependency instead of several, because each costs a few
microseconds on the submit path, which is benchmarked. Nothing outside this module reads
``app.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials

from taskcore.flowservice import FlowService
from taskcore.registry import TaskRegistry
from taskcore.scheduler import ScheduleService
from taskcore.service import TaskService
from taskcore.settings import Settings
from taskcore.store.dashboard import DashboardQueries
from taskcore.store.notify import StatusListener
from taskcore.store.repository import TaskRepository
from taskcore.store.schedules import ScheduleRepository
from taskcore.telemetry import Tracing
from taskflow_api.auth import ANONYMOUS, BEARER, Authenticator, Principal, Scope
from taskflow_api.metrics import ApiMetrics
from taskflow_api.ratelimit import SubmitLimiter


@dataclass(frozen=True, slots=True)
class AppState:
    """What one API process holds while it serves, built once in the lifespan."""

    settings: Settings
    registry: TaskRegistry
    metrics: ApiMetrics
    tracing: Tracing
    auth: Authenticator
    service: TaskService
    listener: StatusListener  # one LISTEN connection wakes every ?wait=N and /events request
    dashboard: DashboardQueries
    limiter: SubmitLimiter | None  # None: submits are not rate limited

    @property
    def repo(self) -> TaskRepository:
        return self.service.repo

    @property
    def flow(self) -> FlowService:
        return self.service.flow

    @property
    def schedules(self) -> ScheduleService:
        """Schedules (stateless over the pool: built on demand)."""
        return ScheduleService(service=self.service, repo=ScheduleRepository(self.service.repo.pool))


def attach(app: FastAPI, state: AppState) -> None:
    """Make ``state`` what this app's requests see (called by the lifespan)."""
    app.state.taskflow = state


def state_of(request: Request) -> AppState:
    """The application's state, for code that is not a dependency (exception handlers, templates)."""
    state: AppState = request.app.state.taskflow
    return state


# Dependencies are coroutines: FastAPI runs a plain function in a thread pool.


async def get_state(request: Request) -> AppState:
    return state_of(request)


async def get_settings(request: Request) -> Settings:
    return state_of(request).settings


async def get_service(request: Request) -> TaskService:
    return state_of(request).service


async def get_repo(request: Request) -> TaskRepository:
    return state_of(request).service.repo


async def get_flow(request: Request) -> FlowService:
    return state_of(request).service.flow


async def get_schedules(request: Request) -> ScheduleService:
    return state_of(request).schedules


async def get_registry(request: Request) -> TaskRegistry:
    return state_of(request).registry


async def get_metrics(request: Request) -> ApiMetrics:
    return state_of(request).metrics


async def get_listener(request: Request) -> StatusListener:
    return state_of(request).listener


async def get_auth(request: Request) -> Authenticator:
    return state_of(request).auth


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[TaskService, Depends(get_service)]
RepoDep = Annotated[TaskRepository, Depends(get_repo)]
FlowServiceDep = Annotated[FlowService, Depends(get_flow)]
SchedulesDep = Annotated[ScheduleService, Depends(get_schedules)]
RegistryDep = Annotated[TaskRegistry, Depends(get_registry)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
ListenerDep = Annotated[StatusListener, Depends(get_listener)]
AuthDep = Annotated[Authenticator, Depends(get_auth)]


# -- who is calling -------------------------------------------------------------------------


def require_scope(scope: Scope) -> Any:
    """A route dependency: ``dependencies=[require_scope(Scope.TASKS_WRITE)]``."""

    async def dependency(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
    ) -> Principal:
        principal = state_of(request).auth.authenticate(
            request.headers.get("authorization"), scope, path=request.url.path
        )
        request.state.principal = principal
        return principal

    return Depends(dependency)


async def charge_submits(request: Request, tasks: int) -> None:
    """Take one token per submitted task from the caller's bucket (RateLimited, 429, when empty).
    The caller is the principal ``require_scope`` (or the dashboard's login) put on the request."""
    limiter = state_of(request).limiter
    if limiter is not None:
        await limiter.charge(getattr(request.state, "principal", ANONYMOUS), tasks)


async def limit_submits(request: Request) -> None:
    """Route dependency (after ``require_scope``) for a single submit."""
    await charge_submits(request, 1)


def submit_rate_limit() -> Any:
    """``dependencies=[require_scope(Scope.TASKS_WRITE), submit_rate_limit()]``."""
    return Depends(limit_submits)
