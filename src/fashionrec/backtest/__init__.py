"""Walk-forward backtest: every method on each of the last K weeks, learning only from earlier weeks,
and the live method chosen on earlier weeks than the one it is scored on."""
