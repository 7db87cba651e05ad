"""Iterable system-webhook bodies in the shape of Iterable's documented examples
(System Webhooks article, "Example system webhook payloads"), one per event name,
plus journey-webhook conversions."""

from __future__ import annotations

import copy
from typing import Any

EMAIL = "docs@iterable.com"

_COMMON: dict[str, Any] = {
    "campaignId": 59667,
    "templateId": 93849,
    "messageId": "d0aa7801f91f4824997a631f3ed583c3",
    "emailId": "c59667:t93849:docs@iterable.com",
    "createdAt": "2016-12-02 18:51:45 +00:00",
    "email": EMAIL,
    "workflowId": None,
    "workflowName": None,
    "labels": [],
    "channelId": 3420,
    "messageTypeId": 3866,
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "emailSend": {
        "email": EMAIL,
        "eventName": "emailSend",
        "dataFields": {
            **_COMMON,
            "createdAt": "2016-12-02 20:21:04 +00:00",
            "campaignName": "My test campaign",
            "templateName": "My template name",
            "emailSubject": "My subject",
            "contentId": 331201,
            "messageTypeId": 3866,
            "catalogCollectionCount": {},
            "catalogLookupCount": 0,
        },
    },
    "emailOpen": {
        "email": EMAIL,
        "eventName": "emailOpen",
        "dataFields": {
            **_COMMON,
            "userAgent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            "proxySource": "Gmail",
            "ip": "66.249.84.204",
            "userAgentDevice": "Gmail",
            "createdAt": "2016-12-02 18:51:40 +00:00",
        },
    },
    "emailClick": {
        "email": EMAIL,
        "eventName": "emailClick",
        "dataFields": {
            **_COMMON,
            "ip": "162.245.22.184",
            "hrefIndex": 2,
            "userAgentDevice": "Mac",
            "url": "https://www.iterable.com",
            "canonicalUrlId": "3145668988",
            "city": "San Francisco",
            "region": "CA",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_1) AppleWebKit/537.36",
            "linkId": "3145668988",
            "linkUrl": "https://www.iterable.com",
        },
    },
    "emailUnSubscribe": {
        "email": EMAIL,
        "eventName": "emailUnSubscribe",
        "dataFields": {
            **_COMMON,
            "createdAt": "2016-12-02 18:51:45 +00:00",
            "channelIds": [],
            "emailListIds": [],
            "unsubSource": "EmailLink",
        },
    },
    "emailSubscribe": {
        "email": EMAIL,
        "eventName": "emailSubscribe",
        "dataFields": {
            "createdAt": "2016-12-05 22:51:25 +00:00",
            "signupSource": "WebForm",
            "emailListIds": [12345],
            "email": EMAIL,
            "profileUpdatedAt": "2016-12-05 22:51:25 +00:00",
        },
    },
    "emailBounce": {
        "email": EMAIL,
        "eventName": "emailBounce",
        "dataFields": {
            **_COMMON,
            "recipientState": "HardBounce",
            "createdAt": "2016-12-02 18:52:33 +00:00",
        },
    },
    "emailComplaint": {
        "email": EMAIL,
        "eventName": "emailComplaint",
        "dataFields": {
            **_COMMON,
            "recipientState": "Complaint",
            "createdAt": "2016-12-09 18:52:19 +00:00",
        },
    },
    "hostedUnsubscribeClick": {
        "email": EMAIL,
        "eventName": "hostedUnsubscribeClick",
        "dataFields": {
            **_COMMON,
            "city": "San Jose",
            "country": "United States",
            "url": "https://iterable.com",
            "userAgentDevice": "Mac",
            "createdAt": "2017-08-23 23:02:50 +00:00",
            "ip": "12.0.0.1",
        },
    },
    # Journey webhooks: the body is the customer's; these follow the system shape.
    "purchase": {
        "email": EMAIL,
        "userId": "user-42",
        "eventName": "purchase",
        "dataFields": {
            "campaignId": 59667,
            "templateId": 93849,
            "createdAt": "2016-12-03 09:12:00 +00:00",
            "total": 49.9,
            "items": [{"id": "sku-1", "name": "Shoes", "price": 49.9, "quantity": 1}],
        },
    },
    "customEvent": {
        "userId": "user-43",
        "eventName": "customEvent",
        "dataFields": {
            "eventName": "trialStarted",
            "campaignId": "59667",
            "createdAt": "2016-12-03T09:15:00Z",
            "plan": "pro",
        },
    },
}


def example(name: str, **top_level: Any) -> dict[str, Any]:
    """A deep copy of an example, with top-level fields replaced (e.g. email)."""
    body = copy.deepcopy(EXAMPLES[name])
    for key, value in top_level.items():
        body[key] = value
        if key == "email" and "email" in body.get("dataFields", {}):
            body["dataFields"]["email"] = value
    return body
