"""What the outcome log costs: bytes per record, request-path time, store write throughput."""
