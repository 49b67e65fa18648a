"""``ReferenceData``: indexes, digest, and the round trip through the real Avro codec
(refdata -> records -> single-object bytes -> records -> identical refdata)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from clearing_core.encoding.codec import SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog
from clearing_core.refdata import (
    REFDATA_TOPICS,
    ParticipantRole,
    PaymentKind,
    RefdataError,
    ReferenceData,
    dump_refdata_yaml,
    load_default_refdata,
    load_refdata,
    parse_refdata,
)
from clearing_core.refdata.models import (
    Currency,
    CurrencyAccount,
    ExportFormat,
    Participant,
    PaymentKindSpec,
    PpaContract,
    PriceBook,
    PriceEntry,
    Rail,
    RefRecord,
    SettlementModel,
    TouBand,
)
from tests.core.fixtures import base_document, base_refdata, find

MODELS: list[type[RefRecord]] = [
    Currency, Rail, CurrencyAccount, Participant, TouBand, PpaContract, PriceEntry, PriceBook,
    PaymentKindSpec,
]  # fmt: skip


def _named_types(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named record/enum inside an expanded schema, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in {"record", "enum"} and "name" in schema:
            name = schema["name"]
            full = name if "." in name else f"{schema.get('namespace', 'clearing')}.{name}"
            found[full] = schema
        for field in schema.get("fields", []):
            _named_types(field["type"], found)
        for key in ("items", "type"):
            if isinstance(schema.get(key), dict | list):
                _named_types(schema[key], found)
    return found


@pytest.fixture(scope="module")
def named(catalog: SchemaCatalog) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for version in catalog:
        _named_types(dict(version.expanded), found)
    return found


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_models_mirror_the_avro_records_field_for_field(
    model: type[RefRecord], named: dict[str, Any]
) -> None:
    schema = named[model.AVRO_NAME]
    assert list(model.model_fields) == [f["name"] for f in schema["fields"]]


@pytest.mark.parametrize(
    ("enum", "name"),
    [(ParticipantRole, "clearing.ParticipantRole"), (PaymentKind, "clearing.PaymentKind"),
     (SettlementModel, "clearing.SettlementModel"), (ExportFormat, "clearing.ExportFormat")],
)  # fmt: skip
def test_enums_mirror_the_avro_enums(enum: Any, name: str, named: dict[str, Any]) -> None:
    assert [m.value for m in enum] == named[name]["symbols"]


def test_indexes_answer_the_pipeline_questions() -> None:
    ref = base_refdata()
    assert ref.participants["DC-SHENZHEN-01"].roles == (ParticipantRole.DATA_CENTRE,)
    assert ref.rails["cnh-cips"].model is SettlementModel.HUB
    assert [r.rail_id for r in ref.rails_for_currency("CNH")] == ["cnh-cips", "cnh-stable"]
    assert ref.rails_for_currency("EUR") == ()
    assert ref.contract_for_meter("MTR-QH07-02") is ref.contracts["PPA-0001"]
    assert ref.contract_for_meter("MTR-NONE") is None
    entry = ref.price_entry("PB-GPUCLOUD-SG-02-USD", "gpu_second")
    assert entry is not None
    assert entry.price_minor_per_million == 69_444
    assert ref.price_entry("PB-GPUCLOUD-SG-02-USD", "api_call") is None
    spec = ref.payment_kind("OM_FEE")
    assert spec is not None
    assert spec.priority == 5
    assert ref.currency("CNH").iso_code == "CNY"
    assert ref.book_lists_customer("PB-GPUCLOUD-SG-02-USD", "AILAB-HK-03")
    assert not ref.book_lists_customer("PB-GPUCLOUD-SG-02-USD", "LESSOR-HK-01")
    assert ref.book_lists_customer("PB-OPEN-USD", "LESSOR-HK-01")  # empty list: anyone
    assert not ref.book_lists_customer("PB-NONE", "LESSOR-HK-01")


def test_settlement_set_up_per_participant_and_currency() -> None:
    ref = base_refdata()
    assert ref.cycle_seconds_for("CNH") == 30  # shortest of cnh-stable 30, cnh-cips 60
    assert ref.cycle_seconds_for("USD") == 120
    assert ref.rail_for("DC-SHENZHEN-01", "CNH").rail_id == "cnh-stable"
    assert ref.cap_minor("DC-SHENZHEN-01", "CNH") == 5_000_000
    assert ref.cap_minor("DC-SHENZHEN-01", "USD") is None
    with pytest.raises(RefdataError, match="'OM-XINING-01' has no USD account"):
        ref.cap_minor("OM-XINING-01", "USD")
    with pytest.raises(RefdataError, match="unknown currency 'EUR'"):
        ref.cycle_seconds_for("EUR")


def test_snapshot_is_immutable() -> None:
    ref = base_refdata()
    with pytest.raises(AttributeError):
        ref.version = "other"
    with pytest.raises(TypeError):
        ref.participants["X"] = ref.participants["DC-SHENZHEN-01"]
    with pytest.raises(Exception, match="frozen"):
        ref.participants["DC-SHENZHEN-01"].active = False


def test_digest_ignores_order_and_label_but_not_content() -> None:
    doc = base_document()
    reordered = base_document()
    random.Random(7).shuffle(reordered["participants"])
    reordered["contracts"].reverse()
    reordered["version"] = "another label"
    assert parse_refdata(doc).digest == parse_refdata(reordered).digest
    assert parse_refdata(doc) == parse_refdata(reordered)
    find(doc, "contracts", "PPA-0002")["tariff_minor_per_mwh"] += 1
    assert parse_refdata(doc).digest != parse_refdata(reordered).digest


def test_yaml_dump_of_a_snapshot_loads_back_identically() -> None:
    ref = base_refdata()
    again = load_refdata(dump_refdata_yaml(ref.to_data()))
    assert again.digest == ref.digest
    assert again.version == ref.version


def _through_codec(ref: ReferenceData, codec: SingleObjectCodec) -> list[tuple[str, str, Any]]:
    decoded = []
    for record in ref.to_records():
        assert record.topic == REFDATA_TOPICS[record.record_type]
        data = codec.encode(record.record_type, record.value, topic=record.topic)
        back = codec.decode(data)
        decoded.append((back.name, record.key, back.record))
    return decoded


def test_round_trip_through_the_real_codec(codec: SingleObjectCodec) -> None:
    ref = base_refdata()
    records = _through_codec(ref, codec)
    assert {name for name, _, _ in records} == {
        "Currency", "Rail", "Participant", "PpaContract", "PriceBook", "PaymentKindSpec"
    }  # fmt: skip
    rebuilt = ReferenceData.from_records(records, version=ref.version)
    assert rebuilt.digest == ref.digest
    assert rebuilt.document == ref.document
    random.Random(3).shuffle(records)  # a compacted topic's order is not the original's
    assert ReferenceData.from_records(records, version="x").digest == ref.digest


def test_round_trip_of_the_default_data_set(codec: SingleObjectCodec) -> None:
    ref = load_default_refdata()
    rebuilt = ReferenceData.from_records(_through_codec(ref, codec), version=ref.version)
    assert rebuilt.digest == ref.digest


def test_from_records_applies_compaction_semantics() -> None:
    ref = base_refdata()
    records: list[tuple[str, str, Any]] = [
        (r.record_type, r.key, r.value) for r in ref.to_records()
    ]
    changed = dict(ref.contracts["PPA-0002"].to_avro(), tariff_minor_per_mwh=31_000)
    records.append(("PpaContract", "PPA-0002", changed))  # a later value replaces
    rebuilt = ReferenceData.from_records(records, version="v2")
    assert rebuilt.contracts["PPA-0002"].tariff_minor_per_mwh == 31_000
    records.append(("clearing.PpaContract", "PPA-0002", None))  # a tombstone deletes
    assert "PPA-0002" not in ReferenceData.from_records(records, version="v3").contracts


def test_from_records_refuses_inconsistent_records() -> None:
    ref = base_refdata()
    records: list[tuple[str, str, Any]] = [
        (r.record_type, r.key, r.value) for r in ref.to_records()
    ]
    with pytest.raises(RefdataError, match="unknown record type 'Obligation'"):
        ReferenceData.from_records([*records, ("Obligation", "x", {})], version="v")
    wrong_key = ("clearing.Rail", "usd-stable", ref.rails["usd-swift"].to_avro())
    with pytest.raises(RefdataError, match=r"key 'usd-stable' of clearing\.Rail differs"):
        ReferenceData.from_records([*records, wrong_key], version="v")
    # Deleting a participant that contracts still name is caught by the same checks.
    tombstone = ("clearing.Participant", "UTIL-GUANGDONG-01", None)
    with pytest.raises(RefdataError, match="unknown participant 'UTIL-GUANGDONG-01'"):
        ReferenceData.from_records([*records, tombstone], version="v")
