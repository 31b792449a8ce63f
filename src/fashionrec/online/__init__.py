"""The online store: what happened since the serving snapshot (purchases, stock, new articles), written by the
stream job (`fashionrec.streaming`) and read by the served model on every request (runtime side: no Spark)."""
