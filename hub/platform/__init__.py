"""Cross-cutting infrastructure with no business rules: database, clock, crypto, HTTP client, web envelope, logging."""
