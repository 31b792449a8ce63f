"""Spark session, Delta read/write/merge, Change Data Feed readers, quarantine, ingest."""
