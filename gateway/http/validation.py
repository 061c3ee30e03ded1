"""Kept for imports of the old path: the chat body's checks live in gateway.wire.validation."""

from gateway.wire.validation import (
    ROLES,
    check_content_type,
    parse_body,
    validate_chat_request,
)

__all__ = ["ROLES", "check_content_type", "parse_body", "validate_chat_request"]
