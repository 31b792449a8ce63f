"""Bundle task `backtest`: walk-forward MAP@12 of every method over the last K weeks, and the live choice."""

import sys

from fashionrec.config import BacktestParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.backtest.task import run_backtest  # imports XGBoost

    return run_backtest(parse_params(BacktestParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("backtest", main(sys.argv[1:]))
