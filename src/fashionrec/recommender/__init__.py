"""The recommender core: every per-customer step (candidates, business rules, ranker features, ranking,
the live method) in one numpy implementation that training, the backtest, batch scoring and serving call."""
