"""fashionrec tests (a regular package: tensorflow-similarity installs a top-level `tests` package too)."""
