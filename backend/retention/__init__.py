"""History retention per tenant: runs, log lines and ticks past the plan's retention, and
the audit log past its own (longer) retention behind a signed checkpoint."""
