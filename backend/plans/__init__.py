"""Plans and their limits: the catalogue, the ``plans`` table, limit resolution and the one
quota check every domain calls where a limit applies (docs/billing.md)."""
