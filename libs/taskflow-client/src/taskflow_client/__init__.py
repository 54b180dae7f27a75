"""Typed client for the TaskFlow REST API: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

>>> from taskflow_client import Client
>>> with Client("http://127.0.0.1:8000") as tf:
...     task = tf.submit("test", {"message": "Hello"}, wait=True)
...     task.status, task.result
"""

from taskflow_client._async import AsyncClient
from taskflow_client._errors import (
    APIError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TaskflowError,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from taskflow_client._models import (
    Batch,
    BatchCallback,
    BatchItem,
    BatchSubmitted,
    BulkAction,
    Delivery,
    DeliveryAttempt,
    KeyUsage,
    Limit,
    Load,
    Queue,
    QueueStats,
    Task,
    TaskLinks,
    TaskPage,
    TaskStatus,
    TaskType,
    TaskTypePause,
    Transition,
    Workflow,
    WorkflowCreated,
    WorkflowPage,
    WorkflowStep,
)
from taskflow_client._schedules import LastRun, Schedule, task_body
from taskflow_client._sync import Client
from taskflow_client._webhooks import verify_signature

__all__ = [
    "APIError",
    "AsyncClient",
    "BadRequest",
    "Batch",
    "BatchCallback",
    "BatchItem",
    "BatchSubmitted",
    "BulkAction",
    "Client",
    "Conflict",
    "Delivery",
    "DeliveryAttempt",
    "Forbidden",
    "KeyUsage",
    "LastRun",
    "Limit",
    "Load",
    "NotFound",
    "PayloadTooLarge",
    "Queue",
    "QueueStats",
    "RateLimited",
    "Schedule",
    "ServerError",
    "Task",
    "TaskLinks",
    "TaskPage",
    "TaskStatus",
    "TaskType",
    "TaskTypePause",
    "TaskflowError",
    "Transition",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "Workflow",
    "WorkflowCreated",
    "WorkflowPage",
    "WorkflowStep",
    "task_body",
    "verify_signature",
]
