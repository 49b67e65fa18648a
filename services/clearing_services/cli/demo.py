"""``clearing demo``: the clearing house's main job on the embedded default."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from typing import Any

import click

from clearing_core.encoding.records import CycleReport
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.operations.finality import per_rail
from clearing_core.refdata import ReferenceData, load_default_refdata
from clearing_services.broker.select import ensure_broker, local_broker
from clearing_services.chain.local import LocalChain
from clearing_services.cli.common import emit_json, err_console, json_option, settings
from clearing_services.ingest.worker import GROUP as INGEST_GROUP
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.groups import group_lag
from clearing_services.kafka.reachability import require_broker
from clearing_services.kafka.topics import EVENT_TOPIC_NAMES
from clearing_services.operations.demo import (
    ChainRun,
    DemoPlan,
    DemoResult,
    bank_rails,
    prepare,
    run_rounds,
    set_up_chain,
    start_banks,
    start_demo_worker,
    stop_worker,
    wait_for_worker,
)
from clearing_services.operations.replay import ReplayReport
from clearing_services.settings import Settings


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


CYCLE_FIELDS = (
    "cycle_id", "currency", "cycle_seq", "obligation_count", "gross_minor", "net_minor",
    "netting_efficiency", "deferred_count", "deferred_minor", "rejected_count",
    "instruction_count", "batch_ids",
)  # fmt: skip
HEADER = (
    f"{'cycle':<14} {'obligations':>11} {'gross':>16} {'net':>16} {'eff':>6} {'instr':>5} "
    f"{'deferred':>8} {'rejected':>8} {'lag':>6}  batches"
)


def _line(report: CycleReport, lag: int) -> str:
    """One line per closed cycle: amounts in major units of the currency."""
    batches = " ".join(b.split(f"-{report['currency']}-")[0] for b in report["batch_ids"]) or "-"
    return (
        f"{report['cycle_id']:<14} {report['obligation_count']:>11,} "
        f"{_money(report['gross_minor']):>16} {_money(report['net_minor']):>16} "
        f"{100 * report['netting_efficiency']:>5.1f}% {report['instruction_count']:>5} "
        f"{report['deferred_count']:>8} {report['rejected_count']:>8} {lag:>6}  {batches}"
    )


@click.command()
@click.option("--rounds", default=6, show_default=True, help="Rounds of events and cycle closes.")
@click.option("--events", "events_per_round", default=4_000, show_default=True,
              help="Events per round (about 1% bad and 1% duplicate).")  # fmt: skip
@click.option("--keep-broker", is_flag=True,
              help="Leave a broker and a chain node the demo started running.")  # fmt: skip
@json_option
def demo(rounds: int, events_per_round: int, keep_broker: bool, as_json: bool) -> None:
    """Run the whole clearing house on the embedded default reference data: a broker
    (started if none is reachable), the topics, the reference data (hundreds of
    participants, three currencies, five rails), the embedded chain with the token
    rails' contracts and the demo accounts prefunded (a few short), a worker process,
    rounds of meter, compute and payment events with some bad and duplicate ones, cycle
    closes with a line per cycle, funding for the short halfway, the token rails'
    finality per cycle, and finally a replay that must reproduce every batch.

    Example: clearing demo --rounds 4 --events 2000
    """
    cfg = settings()
    if cfg.bootstrap_servers:  # a broker named by KAFKA_BOOTSTRAP must answer; none is started
        require_broker(cfg.bootstrap_servers, cfg.broker_timeout_seconds)
    codec = codec_for(cfg, SchemaCatalog.load())
    refdata = load_default_refdata()
    plan = DemoPlan(rounds=rounds, events_per_round=events_per_round)
    t0 = time.monotonic()
    with err_console.status("starting the broker (Kafka jars are fetched once)..."):
        info, started = ensure_broker(cfg)
    err_console.print(f"broker {'started' if started else 'reachable'} at {info.bootstrap}")
    processes: list[subprocess.Popen[bytes]] = []
    chain = LocalChain(cfg.chain_home, cfg.chain_port)
    chain_started = False
    try:
        prepare(cfg, codec, refdata)
        chain_started, chain_run = _start_chain(cfg, refdata, chain)
        _start_processes(cfg, info.bootstrap, refdata, processes)
        err_console.print(HEADER, style="bold")

        def on_report(report: CycleReport) -> None:
            lag = group_lag(info.bootstrap, INGEST_GROUP, EVENT_TOPIC_NAMES)
            err_console.print(_line(report, sum(lag.values())))

        def on_round(round_no: int, count: int) -> None:
            err_console.print(f"[cyan]round {round_no}/{rounds}[/cyan]: {count:,} events sent; "
                              "closing every currency")  # fmt: skip

        result = run_rounds(cfg, codec, refdata, plan, on_report, on_round, _on_funding,
                            chain_run)  # fmt: skip
        _print_finality(result)
        _print_audit(chain_run)
    finally:
        for process in reversed(processes):  # the banks, then the worker
            stop_worker(process)
        if chain_started and not keep_broker:
            chain.stop()
        if started and not keep_broker:
            local_broker(cfg).stop()
            err_console.print("broker stopped")
    seconds = round(time.monotonic() - t0, 1)
    if as_json:
        emit_json(_summary(result, seconds))
    _report_replay(result.replay, seconds)


def _start_processes(
    cfg: Settings, bootstrap: str, refdata: ReferenceData,
    processes: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    """The worker (once it is in its groups), then a simulated bank per ISO 20022 rail;
    each in ``processes`` as soon as it runs, for the caller to stop whatever happens."""
    log_file = cfg.state_dir / "demo-worker.log"
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    worker = start_demo_worker(cfg, log_file)
    processes.append(worker)
    with err_console.status("starting a worker (ingest and netting loops, acks agent)..."):
        wait_for_worker(bootstrap, worker, log_file)
    err_console.print(f"worker running (log: {log_file})")
    processes.extend(start_banks(cfg, refdata))
    err_console.print(f"simulated banks answering {', '.join(bank_rails(refdata))} "
                      f"(documents: {cfg.state_dir / 'bank'})")  # fmt: skip


def _start_chain(cfg: Settings, refdata: ReferenceData, chain: LocalChain) -> tuple[bool, ChainRun]:
    """The embedded chain with the token rails deployed and prefunded; True if started."""
    err_console.print(
        f"reference data published: {len(refdata.participants)} participants, "
        f"{len(refdata.contracts)} PPAs, {len(refdata.price_books)} price books, "
        f"rails {', '.join(sorted(refdata.rails))}"
    )
    with err_console.status("starting the embedded chain, deploying the token rails..."):
        started = chain.start()[1]
        run = set_up_chain(cfg, refdata)
    for setup in run.setups:
        err_console.print(f"{setup.rail_id}: settlement contract {setup.contracts.settlement} "
                          f"on {chain.url}; {setup.funded} demo accounts prefunded, short: "
                          f"{', '.join(setup.short) or '-'}")  # fmt: skip
    return started, run


def _print_audit(run: ChainRun) -> None:
    """The chain audit's verdict per rail; a mismatch is an error (the demo fails)."""
    for rail, problems in sorted(run.audit.items()):
        accounts = len(run.before.get(rail, {}))
        if not problems:
            err_console.print(f"chain audit {rail}: the balances of {accounts} accounts moved by "
                              "exactly their settled instructions, to the token unit")  # fmt: skip
        for line in problems:
            err_console.print(f"chain audit {rail}: {line}", markup=False)
    if any(run.audit.values()):
        raise click.ClickException("the chain's balances do not match the settled instructions")


def _on_funding(funded: dict[str, list[str]]) -> None:
    for rail, who in funded.items():
        err_console.print(f"[cyan]funding arrives[/cyan] on {rail} for {', '.join(who)}: "
                          "their carried payments settle in the next cycles")  # fmt: skip


def _summary(result: DemoResult, seconds: float) -> dict[str, Any]:
    """The ``--json`` answer: the run's time and events, each cycle's figures, the replay."""
    return {
        "seconds": seconds, "events_produced": result.produced,
        "cycles": [_figures(r) for r in result.cycles],
        "rails": per_rail(result.finality),
        "chain_audit": result.chain_audit,
        "finality": result.finality,
        "replay": result.replay.as_dict(),
    }  # fmt: skip


def _print_finality(result: DemoResult) -> None:
    """Per cycle and rail: settled / failed / pending, and the value carried."""
    err_console.print(f"{'finality':<14} {'rail':<11} {'settled':>7} {'failed':>6} "
                      f"{'pending':>7} {'carried':>16}", style="bold")  # fmt: skip
    for cycle in result.finality:
        for n, rail in enumerate(cycle["rails"]):
            head = cycle["cycle_id"] if n == 0 else ""
            state = "final" if rail["pending"] == 0 else "waiting for the bank (clearing ack)"
            err_console.print(f"{head:<14} {rail['rail_id']:<11} {rail['settled']:>7} "
                              f"{rail['failed']:>6} {rail['pending']:>7} "
                              f"{_money(rail['carried_minor']):>16}  {state}")  # fmt: skip


def _figures(report: Mapping[str, object]) -> dict[str, object]:
    """The ``CYCLE_FIELDS`` of a cycle report."""
    return {k: report[k] for k in CYCLE_FIELDS}


def _report_replay(replay: ReplayReport, seconds: float) -> None:
    """The replay's verdict and each problem on stderr; a failed replay is an error."""
    err_console.print(f"{replay.summary()} ({seconds} s in all)", soft_wrap=True)
    for line in replay.problems():
        err_console.print(f"replay: {line}", markup=False, soft_wrap=True)
    if not replay.ok:
        raise click.ClickException("the replay does not reproduce the emitted batches")
