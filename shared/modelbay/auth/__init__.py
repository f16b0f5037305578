"""API keys with scopes, tenants, and the audit log."""

from . import credentials
from .keys import SCOPES, KeyRecord, KeyStore
from .tenants import Tenant, TenantStore
from .audit import AuditLog, AuditedRegistry

__all__ = ["credentials", "SCOPES", "KeyRecord", "KeyStore", "Tenant", "TenantStore", "AuditLog", "AuditedRegistry"]
