"""PostgreSQL access: the engine, the schema's SQL, and one repo module per table."""
