"""The domain's status sets as SQL, composed once at import: statements never spell a status set."""

from __future__ import annotations

from collections.abc import Set

from taskcore.domain import RETRYABLE_STATES, TERMINAL_STATES, TRANSITIONS, WAITING_STATES, TaskStatus


def sql_states(states: Set[TaskStatus], *, entering: TaskStatus | None = None) -> str:
    """``states`` as an SQL list of literals, ``('queued', 'scheduled')``. With ``entering``, the
    domain's TRANSITIONS must allow each of ``states`` to move there: a statement whose guard
    disagrees with the table fails at import, not on a task."""
    if entering is not None:
        illegal = sorted(s for s in states if entering not in TRANSITIONS[s])
        if illegal:
            raise ValueError(f"TRANSITIONS does not allow {illegal} -> {entering}")
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


def sql_status(status: TaskStatus, *, entering_from: Set[TaskStatus] = frozenset()) -> str:
    """One status as an SQL literal; ``entering_from`` checks the table lets those states reach it."""
    sql_states(entering_from, entering=status)
    return f"'{status.value}'"


WAITING = sql_states(WAITING_STATES)
TERMINAL = sql_states(TERMINAL_STATES)
# Those reported as queue depth: everything not finished.
UNFINISHED = sql_states(frozenset(TaskStatus) - TERMINAL_STATES)
# What a claim moves to running: the table's sources of RUNNING that are waiting (a retry's
# source states are not claimable: they go through queued first).
CLAIMABLE = sql_states(WAITING_STATES, entering=TaskStatus.RUNNING)

RUNNING = sql_status(TaskStatus.RUNNING, entering_from=WAITING_STATES)
SUCCEEDED = sql_status(TaskStatus.SUCCEEDED, entering_from={TaskStatus.RUNNING})
FAILED = sql_status(TaskStatus.FAILED, entering_from={TaskStatus.RUNNING})
CANCELLED = sql_status(TaskStatus.CANCELLED, entering_from=frozenset(TaskStatus) - TERMINAL_STATES)
# A retry later (from running), a release on shutdown or a manual retry (queued).
SCHEDULED = sql_status(TaskStatus.SCHEDULED, entering_from={TaskStatus.RUNNING})
QUEUED = sql_status(TaskStatus.QUEUED, entering_from={TaskStatus.RUNNING} | RETRYABLE_STATES)
# Workflows (taskcore.store.workflows): a task waiting for its parents, unblocked into queued or
# scheduled, re-armed (cancelled or failed -> blocked) when the upstream task it waited on is retried.
BLOCKED = sql_status(TaskStatus.BLOCKED, entering_from=RETRYABLE_STATES)
UNBLOCKED_QUEUED = sql_status(TaskStatus.QUEUED, entering_from={TaskStatus.BLOCKED})
UNBLOCKED_SCHEDULED = sql_status(TaskStatus.SCHEDULED, entering_from={TaskStatus.BLOCKED})
