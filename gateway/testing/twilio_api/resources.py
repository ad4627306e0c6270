"""What the fake API answers: Twilio-shaped JSON for calls, numbers, pages and errors.

Field names and formats follow Twilio's 2010-04-01 API as the ``twilio`` library's models read
them (``CallInstance``, ``IncomingPhoneNumberInstance``, ``Page``): snake_case keys, dates in
RFC 2822 (``Tue, 31 Aug 2010 20:36:28 +0000``), durations as strings, ``uri`` relative to
``https://api.twilio.com``. Errors use Twilio's legacy shape (``code``, ``message``,
``more_info``, ``status``), which the library turns into ``TwilioRestException``.
"""

from __future__ import annotations

import email.utils
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from gateway.testing.twilio_api.call import FakeCall

__all__ = [
    "API_VERSION",
    "ApiError",
    "FakeNumber",
    "call_resource",
    "error_body",
    "number_resource",
    "page_body",
    "rfc2822",
]

API_VERSION = "2010-04-01"


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else email.utils.format_datetime(moment.astimezone(timezone.utc))


def now() -> datetime:
    return datetime.now(timezone.utc)


class ApiError(Exception):
    """An error answer: HTTP ``status`` with Twilio error ``code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def not_found(cls, path: str) -> ApiError:
        return cls(404, 20404, f"The requested resource {path} was not found")

    @classmethod
    def bad_request(cls, code: int, message: str) -> ApiError:
        return cls(400, code, message)


def error_body(error: ApiError, **extra: Any) -> dict[str, Any]:
    return {
        "code": error.code,
        "message": error.message,
        "more_info": f"https://www.twilio.com/docs/errors/{error.code}",
        "status": error.status,
        **extra,
    }


def _account_uri(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def call_resource(call: FakeCall) -> dict[str, Any]:
    """A Call resource as ``GET .../Calls/{CallSid}.json`` returns it."""
    uri = f"{_account_uri(call.account_sid)}/Calls/{call.sid}"
    subresources = (
        "user_defined_message_subscriptions", "user_defined_messages", "notifications",
        "recordings", "streams", "payments", "siprec", "events", "transcriptions",
    )
    return {
        "account_sid": call.account_sid,
        "annotation": None,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(call.date_created),
        "date_updated": rfc2822(call.date_updated),
        "direction": call.direction,
        "duration": None if call.duration is None else str(call.duration),
        "end_time": rfc2822(call.end_time),
        "forwarded_from": None,
        "from": call.from_,
        "from_formatted": call.from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": call.sid,
        "start_time": rfc2822(call.start_time),
        "status": call.status,
        "subresource_uris": {name: f"{uri}/{_camel(name)}.json" for name in subresources},
        "to": call.to,
        "to_formatted": call.to,
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass
class FakeNumber:
    """One of the account's phone numbers (IncomingPhoneNumber). ``updates``: the forms of
    the REST updates it received, in order."""

    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    voice_url: str = ""
    voice_method: str = "POST"
    voice_fallback_url: str = ""
    voice_fallback_method: str = "POST"
    status_callback: str = ""
    status_callback_method: str = "POST"
    date_created: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)
    updates: list[dict[str, str]] = field(default_factory=list)

    #: Form fields of an update and the attribute each sets.
    UPDATABLE: ClassVar[dict[str, str]] = {
        "FriendlyName": "friendly_name",
        "VoiceUrl": "voice_url",
        "VoiceMethod": "voice_method",
        "VoiceFallbackUrl": "voice_fallback_url",
        "VoiceFallbackMethod": "voice_fallback_method",
        "StatusCallback": "status_callback",
        "StatusCallbackMethod": "status_callback_method",
    }


def number_resource(number: FakeNumber) -> dict[str, Any]:
    """An IncomingPhoneNumber resource as ``GET .../IncomingPhoneNumbers/{Sid}.json`` returns it."""
    uri = f"{_account_uri(number.account_sid)}/IncomingPhoneNumbers/{number.sid}"
    return {
        "account_sid": number.account_sid,
        "address_requirements": "none",
        "address_sid": None,
        "api_version": API_VERSION,
        "beta": False,
        "bundle_sid": None,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
        "date_created": rfc2822(number.date_created),
        "date_updated": rfc2822(number.date_updated),
        "emergency_address_sid": None,
        "emergency_address_status": "unregistered",
        "emergency_status": "Active",
        "friendly_name": number.friendly_name,
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": number.phone_number,
        "sid": number.sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": "",
        "status": "in-use",
        "status_callback": number.status_callback,
        "status_callback_method": number.status_callback_method,
        "subresource_uris": {"assigned_add_ons": f"{uri}/AssignedAddOns.json"},
        "trunk_sid": None,
        "type": "local",
        "uri": f"{uri}.json",
        "voice_application_sid": "",
        "voice_caller_id_lookup": False,
        "voice_fallback_method": number.voice_fallback_method,
        "voice_fallback_url": number.voice_fallback_url,
        "voice_method": number.voice_method,
        "voice_receive_mode": "voice",
        "voice_url": number.voice_url,
    }


def page_body(
    key: str, records: list[dict[str, Any]], *, path: str, filters: dict[str, str], page: int, page_size: int
) -> dict[str, Any]:
    """Twilio's 2010-04-01 paging envelope around one page of ``records`` (all matches)."""
    start = page * page_size
    chosen = records[start : start + page_size]

    def page_uri(number: int) -> str:
        query = urllib.parse.urlencode({**filters, "PageSize": page_size, "Page": number})
        return f"{path}?{query}"

    has_next = start + page_size < len(records)
    return {
        "end": start + max(len(chosen) - 1, 0),
        "first_page_uri": page_uri(0),
        key: chosen,
        "next_page_uri": page_uri(page + 1) if has_next else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": page_uri(page),
    }
