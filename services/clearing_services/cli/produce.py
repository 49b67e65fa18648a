"""``clearing produce``: publish events from a JSON-lines or CSV file, or generate them."""

from __future__ import annotations

import time
from pathlib import Path

import click

from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.errors import InputError
from clearing_core.ingest.identify import load_private_key
from clearing_core.refdata.codes import ID_PATTERN
from clearing_core.workload.generator import EventGenerator
from clearing_services.cli.common import (
    bootstrap_option,
    emit_json,
    err_console,
    json_option,
    needs_broker,
    settings,
)
from clearing_services.kafka.codecs import codec_for
from clearing_services.kafka.refdata import load_refdata_from_topics
from clearing_services.sources.event_files import encode_event_file
from clearing_services.sources.publish import Signing, encode_generated, publish

GENERATE_MAX = 50_000_000


def load_signing(key_file: Path | None, signer: str | None) -> Signing | None:
    """``--sign-key FILE --signer ID``: both or neither."""
    if key_file is None and signer is None:
        return None
    if key_file is None or signer is None:
        raise InputError("--sign-key and --signer go together")
    if ID_PATTERN.fullmatch(signer) is None:
        raise InputError(f"--signer {signer[:80]!r} is not a participant id")
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {key_file}: {exc.strerror}") from None
    return Signing(load_private_key(data), signer)


@click.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--type", "event_type", type=click.Choice(["meter", "compute", "payment"]),
    help="Event type of every line (JSON lines may instead carry a \"type\" key).",
)  # fmt: skip
@click.option(
    "--generate", type=int, help="Generate this many events from the published reference data."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Generator seed.")
@click.option(
    "--bad-ratio", type=float, default=0.0, show_default=True, help="Share of bad events."
)
@click.option(
    "--duplicate-ratio", type=float, default=0.0, show_default=True, help="Share of resent events."
)
@click.option(
    "--sign-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign every event with this Ed25519 private key (PEM, or 32 bytes base64 or hex).",
)  # fmt: skip
@click.option("--signer", help="Participant id the signature speaks for (with --sign-key).")
@bootstrap_option
@json_option
@needs_broker
def produce(
    file: Path | None, event_type: str | None, generate: int | None, seed: int,
    bad_ratio: float, duplicate_ratio: float, sign_key: Path | None, signer: str | None,
    bootstrap: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Publish events: a whole file, validated against the schemas before anything is
    sent, or a generated realistic stream (meter, compute, payment; optionally some
    bad and duplicate events) for the reference data on the topics.

    JSON lines: one event object per line, timestamps ISO 8601 with a zone (or
    epoch milliseconds), dates YYYY-MM-DD. CSV: a header of field names.

    With --sign-key and --signer, every event carries the signer's Ed25519 signature
    (headers clearing-signer, clearing-signature); the ingest stage refuses an event
    whose signer is not its reporter and a party to it (docs/identity.md).

    Examples: clearing produce events.jsonl
              clearing produce --generate 10000 --bad-ratio 0.01 --duplicate-ratio 0.01
              clearing produce readings.jsonl --sign-key solar.key --signer SOLAR-QINGHAI-07
    """
    cfg = settings()
    where = bootstrap or cfg.bootstrap()
    catalog = SchemaCatalog.load()
    codec = codec_for(cfg, catalog)
    if (file is None) == (generate is None):
        raise InputError("give either FILE or --generate N")
    signing = load_signing(sign_key, signer)
    if file is not None:
        events = encode_event_file(file, codec, catalog, event_type)
    else:
        assert generate is not None
        if not 1 <= generate <= GENERATE_MAX or not 0 <= bad_ratio + duplicate_ratio <= 1:
            raise InputError(f"--generate must be 1..{GENERATE_MAX}, ratios within 0..1")
        refdata = load_refdata_from_topics(where, codec, group="clearing-produce")
        generator = EventGenerator(refdata, seed=seed, now_ms=int(time.time() * 1000),
                                   prefix=f"gen{seed}")  # fmt: skip
        with err_console.status(f"generating and encoding {generate:,} events..."):
            generated = generator.events(generate, bad_ratio, duplicate_ratio)
            events = [encode_generated(codec, e) for e in generated]
    t0 = time.perf_counter()
    with err_console.status(f"publishing {len(events):,} events..."):
        counts = publish(where, events, signing)
    seconds = time.perf_counter() - t0
    if as_json:
        emit_json({"produced": dict(counts), "seconds": round(seconds, 3)})
    else:
        for topic, count in sorted(counts.items()):
            err_console.print(f"{count:>9,} events -> {topic}")
