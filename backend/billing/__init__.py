"""Usage metering per tenant per day and the usage API (docs/billing.md)."""
