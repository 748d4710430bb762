"""The conversation store: schema, engine, migrations and the repositories over them."""
