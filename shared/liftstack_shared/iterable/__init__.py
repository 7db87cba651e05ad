"""liftstack's async Iterable API client.

    async with IterableClient(key, Region.US, rate_limits=registry) as client:
        result = await client.bulk_update(users)

See client.py (requests), retry.py (retry policy), bulk.py (bulkUpdate results and packing),
ratelimit.py (per-project buckets), models.py (request/response shapes).
"""

from liftstack_shared.iterable.bulk import (
    DEFAULT_RETRYABLE,
    MAX_BODY_BYTES,
    MAX_USERS_PER_REQUEST,
    BulkUpdateResponse,
    BulkUpdateResult,
    BulkUpdateUser,
    FailedUpdates,
    FailureReason,
    UserOutcome,
    pack_users,
)
from liftstack_shared.iterable.client import HOSTS, IterableClient
from liftstack_shared.iterable.errors import (
    IterableAuthError,
    IterableBadRequest,
    IterableConflict,
    IterableError,
    IterableNotFound,
    IterableRateLimited,
    IterableUnavailable,
)
from liftstack_shared.iterable.models import (
    ApiResponse,
    EmailTemplate,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableList,
    LinkParam,
    LinkParamInfo,
    ListType,
    MessageMedium,
    Region,
    TemplateEntry,
    TemplatesPage,
    TemplateSummary,
    TemplateType,
    UserFields,
    Webhook,
)
from liftstack_shared.iterable.ratelimit import (
    PUBLISHED_LIMITS,
    Endpoint,
    Limit,
    NoRateLimits,
    RateLimiterRegistry,
    RateLimits,
    RoutedRateLimits,
    default_registry,
)
from liftstack_shared.iterable.retry import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_RETRYABLE",
    "HOSTS",
    "MAX_BODY_BYTES",
    "MAX_USERS_PER_REQUEST",
    "PUBLISHED_LIMITS",
    "ApiResponse",
    "BulkUpdateResponse",
    "BulkUpdateResult",
    "BulkUpdateUser",
    "EmailTemplate",
    "EmailTemplateUpdate",
    "EmailTemplateUpsert",
    "Endpoint",
    "FailedUpdates",
    "FailureReason",
    "IterableAuthError",
    "IterableBadRequest",
    "IterableClient",
    "IterableConflict",
    "IterableError",
    "IterableList",
    "IterableNotFound",
    "IterableRateLimited",
    "IterableUnavailable",
    "Limit",
    "LinkParam",
    "ListType",
    "MessageMedium",
    "NoRateLimits",
    "RateLimiterRegistry",
    "RateLimits",
    "Region",
    "RetryPolicy",
    "RoutedRateLimits",
    "TemplateEntry",
    "LinkParamInfo",
    "TemplateSummary",
    "TemplateType",
    "TemplatesPage",
    "UserFields",
    "UserOutcome",
    "Webhook",
    "default_registry",
    "pack_users",
    "parse_retry_after",
]
