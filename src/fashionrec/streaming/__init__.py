"""The real-time path (build side): the `events` table, the stream job that applies it to `transactions`
and the online store, and the replay of generated events."""
