"""Tenants, teams, virtual keys and budgets: the in-memory directory and authentication."""

from gateway.tenancy.auth import authenticate, authenticate_master
from gateway.tenancy.directory import BudgetRule, Directory, Principal
from gateway.tenancy.keys import hash_key, new_key

__all__ = [
    "BudgetRule",
    "Directory",
    "Principal",
    "authenticate",
    "authenticate_master",
    "hash_key",
    "new_key",
]
