"""Build side of the serving snapshot (Spark): the files the runtime (`fashionrec.recommender`) loads, and
the core run on Spark through `mapInPandas`."""
