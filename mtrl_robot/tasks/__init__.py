"""Tasks over the one robot interface, on any backend: reaching and puck hitting."""
