"""API keys with scopes, tenants, and the audit log."""

from . import credentials
from .keys import KeyRecord, KeyStore
from .principal import SCOPES, Principal, require_scope
from .tenants import Tenant, TenantStore
from .audit import AuditLog, AuditedRegistry

__all__ = ["credentials", "SCOPES", "Principal", "require_scope", "KeyRecord", "KeyStore", "Tenant", "TenantStore", "AuditLog", "AuditedRegistry"]
