"""What requests did and cost: records, token estimates, the client's usage object, the durable
ledger, /stats, /metrics, and bounded rows for refused requests."""
