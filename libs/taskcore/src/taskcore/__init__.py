"""taskcore: what the TaskFlow API and worker share."""

from taskcore.domain import BackoffPolicy, NewTask, QueueStats, Task, TaskStatus
from taskcore.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    PayloadTooLarge,
    TaskflowError,
    TaskNotFound,
    TaskValidationError,
)
from taskcore.registry import TaskContext, TaskRegistry, TaskType, default_registry, load_registry, task
from taskcore.settings import Profile, Settings

__all__ = [
    "BackoffPolicy",
    "DependencyUnavailable",
    "IdempotencyConflict",
    "InvalidTransition",
    "NewTask",
    "PayloadTooLarge",
    "Profile",
    "QueueStats",
    "Settings",
    "Task",
    "TaskContext",
    "TaskNotFound",
    "TaskRegistry",
    "TaskStatus",
    "TaskType",
    "TaskValidationError",
    "TaskflowError",
    "default_registry",
    "load_registry",
    "task",
]
