"""The hosted account lifecycle: email verification, password reset and invitations by
email, each through a single-use expiring token stored hashed (docs/billing.md)."""
