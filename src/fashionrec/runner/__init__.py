"""Local runner: executes the bundle's job graph (resources/*.yml) on this machine."""
