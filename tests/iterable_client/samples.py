"""Canned Iterable responses for MockTransport tests, shaped per the spec
(test_spec_contract.py validates each against its response schema)."""

from __future__ import annotations

from typing import Any

BULK_UPDATE_OK: dict[str, Any] = {
    "successCount": 2,
    "failCount": 0,
    "createdFields": ["lf_assignments"],
    "filteredOutFields": [],
    "failedUpdates": {},
}
USER_FIELDS: dict[str, Any] = {"fields": {"email": "string", "lf_assignments": "object"}}
LISTS: dict[str, Any] = {
    "lists": [
        {"id": 1, "name": "Newsletter", "description": "weekly", "listType": "Standard", "createdAt": 1700000000},
        {"id": 2, "name": "Engaged", "listType": "Dynamic", "createdAt": 1700000001},
    ]
}
TEMPLATES: dict[str, Any] = {
    "templates": [
        # Epoch ms, as Iterable sends them (its official client requires numbers).
        {
            "templateId": 11,
            "name": "Welcome",
            "createdAt": 1704067200000,
            "updatedAt": 1704153600000,
            "creatorUserId": "a@b.co",
            "messageTypeId": 5,
            "campaignId": 7,
            "clientTemplateId": "lf-welcome",
        },
    ],
}
EMAIL_TEMPLATE: dict[str, Any] = {
    "templateId": 11,
    "name": "Welcome",
    "clientTemplateId": "lf-welcome",
    "subject": "Hi {{firstName}}",
    "fromName": "Acme",
    "fromEmail": "news@acme.test",
    "preheaderText": "pre",
    "html": "<p>Hi</p>",
    "plainText": "Hi",
    "messageTypeId": 5,
    "linkParams": [{"key": "utm_source", "value": "iterable"}],
}
BY_CLIENT_ID: dict[str, Any] = {"templates": [{"templateId": 11, "campaignId": 7, "locales": ["en", "fr"]}]}
UPSERT_OK: dict[str, Any] = {
    "msg": "Upserted 1 templates with IDs: 11",
    "code": "Success",
}
UPDATE_OK: dict[str, Any] = {"msg": "Updated template 11", "code": "Success"}
WEBHOOKS: dict[str, Any] = {
    "webhooks": [
        {
            "id": 3,
            "endpoint": "https://hooks.liftstack.test/iterable",
            "authType": "Basic",
            "enabled": True,
            "blastSendEnabled": True,
            "triggeredSendEnabled": True,
            "channelIds": [],
            "messageTypeIds": [],
        },
    ]
}

# (method, path) -> canned JSON body, for a MockTransport that answers everything.
BY_ROUTE: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/users/bulkUpdate"): BULK_UPDATE_OK,
    ("GET", "/api/users/getFields"): USER_FIELDS,
    ("GET", "/api/lists"): LISTS,
    ("GET", "/api/templates"): TEMPLATES,
    ("GET", "/api/templates/email/get"): EMAIL_TEMPLATE,
    ("GET", "/api/templates/getByClientTemplateId"): BY_CLIENT_ID,
    ("POST", "/api/templates/email/upsert"): UPSERT_OK,
    ("POST", "/api/templates/email/update"): UPDATE_OK,
    ("GET", "/api/webhooks"): WEBHOOKS,
}
