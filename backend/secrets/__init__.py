"""Tenant secrets: write-only values, envelope-encrypted at rest, referenced from job specs
as ``${{ secrets.NAME }}`` and resolved only at dispatch (docs/security.md#secrets)."""
