"""Pick the codec the settings ask for: single-object by default, Confluent with a registry."""

from __future__ import annotations

from clearing_core.encoding.codec import Codec, SingleObjectCodec
from clearing_core.encoding.schemas import SchemaCatalog, SchemaCatalogError
from clearing_core.errors import InputError
from clearing_services.settings import Settings


def codec_for(settings: Settings, catalog: SchemaCatalog | None = None) -> Codec:
    """``SingleObjectCodec`` unless ``SCHEMA_REGISTRY_URL`` is set. The catalog also
    reads the writer versions in ``CLEARING_WRITER_SCHEMAS`` (docs/schemas.md)."""
    catalog = catalog or SchemaCatalog.load()
    if settings.writer_schema_dirs:
        try:
            catalog = catalog.with_writer_dirs(settings.writer_schema_dirs)
        except SchemaCatalogError as exc:
            raise InputError(f"CLEARING_WRITER_SCHEMAS: {exc}") from exc
    if not settings.schema_registry_url:
        return SingleObjectCodec(catalog)
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from clearing_services.kafka.registry_codec import ConfluentCodec

    client = SchemaRegistryClient.new_client({"url": settings.schema_registry_url})
    return ConfluentCodec(client, catalog)
