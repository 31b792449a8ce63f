"""Build side of ranking: the ranker's training task (`train_ranker`) and batch scoring over the runtime core."""
