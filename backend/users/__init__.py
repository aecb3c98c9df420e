"""Users and their refresh tokens: who can log in, across tenants (memberships are in tenants)."""
