"""`python -m fashionrec` (or the `fashionrec` script): run the job graph locally, generate data."""

from __future__ import annotations

import argparse
import logging
import sys

from fashionrec.runner.bundle import BundleError


def _variables(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--var expects NAME=VALUE, got {pair!r}")
        values[name] = value
    return values


def backtest_variables(given: dict[str, str], weeks: int) -> dict[str, str]:
    """A backtest of a data folder gets a lakehouse and reports of its own (`backtests/<folder name>/`),
    so backtesting real files never mixes them into the demo's lakehouse."""
    from pathlib import Path

    data_path = given.get("data_path", "data/small")
    home = Path("backtests") / (Path(data_path).resolve().name or "data")
    defaults = {
        "lakehouse_dir": str(home / "lakehouse"),
        "reports_dir": str(home / "reports"),
        "artifacts_dir": str(home / "artifacts"),
    }
    return {**defaults, **given, "data_path": data_path, "backtest_weeks": str(weeks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fashionrec", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bundle's job graph on this machine")
    run.add_argument(
        "--target", default="local", help="bundle target whose variables to use (default: local)"
    )
    run.add_argument("--job", default="fashionrec", help="job key in resources/*.yml")
    run.add_argument("--only", action="append", metavar="TASK", help="run only this task (repeatable)")
    run.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="override a bundle variable"
    )
    run.add_argument("--bundle-root", default=".", help="folder of databricks.yml")
    run.add_argument("--summary", default="reports/latest_run.json", help="where to write the run summary")

    backtest = commands.add_parser(
        "backtest", help="walk-forward backtest of every method over the last K weeks of a data folder"
    )
    backtest.add_argument("--weeks", type=int, default=8, help="reported weeks (default 8)")
    backtest.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="override a bundle variable"
    )
    backtest.add_argument("--bundle-root", default=".", help="folder of databricks.yml")

    tasks = commands.add_parser("tasks", help="list the job's tasks in run order with their parameters")
    tasks.add_argument("--target", default="local")
    tasks.add_argument("--job", default="fashionrec")
    tasks.add_argument("--bundle-root", default=".")

    gen = commands.add_parser("generate", help="write an H&M-shaped synthetic data set (Kaggle CSV formats)")
    gen.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    gen.add_argument("--out", default=None, help="output folder (default: data/<scale>)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument(
        "--daily-files",
        type=int,
        default=0,
        metavar="N",
        help="keep the last N days out of transactions_train.csv, one file per day under <out>/arrivals/",
    )

    gen.add_argument(
        "--events",
        type=int,
        default=0,
        metavar="N",
        help="also write N shop events of the day after the history (<out>/events.parquet) for `replay`",
    )

    commands.add_parser(
        "stream",
        help="apply the events table to transactions and the online store (until stopped, or "
        "--available-now true: what is there now); options: StreamParams (--lakehouse, --online-store, ...)",
    )

    replay = commands.add_parser("replay", help="append a file of events to the events table at N events/s")
    replay.add_argument(
        "--events", default="data/small/events.parquet", help="events file (parquet or JSON lines)"
    )
    replay.add_argument("--rate", type=float, default=20.0, help="events a second (default 20)")
    replay.add_argument("--limit", type=int, default=None, help="only the first N events")
    replay.add_argument("--lakehouse", default="lakehouse")
    replay.add_argument("--catalog", default="")
    replay.add_argument("--schema", default="fashionrec")

    realtime = commands.add_parser(
        "realtime", help="one shopper's answer before and after the stream applies their purchase (make demo)"
    )
    realtime.add_argument("--lakehouse", default="lakehouse")
    realtime.add_argument("--artifacts-dir", default="artifacts")
    realtime.add_argument("--events", default="data/small/events.parquet")

    serve = commands.add_parser(
        "serve", help="serve a registered model with MLflow's scoring app on N workers (Nagle off)"
    )
    serve.add_argument("-m", "--model-uri", default="models:/fashionrec_recommender@champion")
    serve.add_argument("-H", "--host", default="127.0.0.1")
    serve.add_argument("-p", "--port", type=int, default=5001)
    serve.add_argument("-w", "--workers", type=int, default=2, help="one per core (default: 2)")

    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "stream":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "generate":
            from fashionrec.data.synthetic import generate
            from fashionrec.runner.report import print_figures

            default_out = f"data/{args.scale}" + ("-daily" if args.daily_files else "")
            manifest = generate(
                args.scale, args.out or default_out, seed=args.seed, daily_files=args.daily_files
            )
            print_figures(
                "generate", {k: v for k, v in manifest.items() if k != "scale"} | {"scale": args.scale}
            )
            if args.events:
                from fashionrec.data.events import make_events

                print(f"events: {make_events(args.out or default_out, args.events)}")
            return 0
        if args.command == "stream":
            from fashionrec.config import StreamParams, parse_params
            from fashionrec.runner.report import print_figures
            from fashionrec.streaming.task import run_stream

            print_figures("stream", run_stream(parse_params(StreamParams, extra)))
            return 0
        if args.command == "realtime":
            from fashionrec.runner.report import print_figures
            from fashionrec.streaming.showcase import ShowcaseParams, showcase

            print_figures(
                "realtime", showcase(ShowcaseParams(args.lakehouse, args.artifacts_dir, args.events))
            )
            return 0
        if args.command == "replay":
            from fashionrec.config.tables import TableLocator
            from fashionrec.lake.session import get_spark
            from fashionrec.streaming.replay import read_events, replay

            tables = TableLocator(args.lakehouse, args.catalog, args.schema)
            commits = replay(
                get_spark("fashionrec-replay"), tables, read_events(args.events), args.rate, args.limit
            )
            print(f"replay: {sum(len(c.event_ids) for c in commits)} events in {len(commits)} commits")
            return 0
        if args.command == "serve":
            from fashionrec.serving.server import ServeConfig, serve

            return serve(ServeConfig(args.model_uri, args.host, args.port, args.workers))
        if args.command == "tasks":
            from fashionrec.runner.bundle import load_bundle

            job = load_bundle(args.bundle_root).job(args.job, args.target)
            for task in job.ordered():
                after = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
                print(f"{task.key}{after}: {task.python_file.name} {' '.join(task.parameters)}")
            return 0
        from fashionrec.runner.local import run_job

        if args.command == "backtest":
            variables = backtest_variables(_variables(args.var), args.weeks)
            summary = f"{variables['reports_dir']}/latest_run.json"
            result = run_job(args.bundle_root, "fashionrec_backtest", "local", variables, None, summary)
            return 1 if result.failed else 0
        result = run_job(
            args.bundle_root, args.job, args.target, _variables(args.var), args.only, args.summary
        )
        return 1 if result.failed else 0
    except BundleError as exc:
        print(f"fashionrec: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
