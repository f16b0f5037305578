"""API keys with scopes, tenants, and the audit log."""

from . import credentials
from .audit import AuditedRegistry, AuditLog
from .keys import KeyRecord, KeyStore
from .principal import SCOPES, Principal, require_scope
from .tenants import Tenant, TenantStore

__all__ = [
    "SCOPES",
    "AuditLog",
    "AuditedRegistry",
    "KeyRecord",
    "KeyStore",
    "Principal",
    "Tenant",
    "TenantStore",
    "credentials",
    "require_scope",
]
