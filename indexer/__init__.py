"""The car index: a gallery of car photos embedded into a vector store behind one alias, built,
rebuilt after retraining and rolled out without losing a write. ``app``, ``carsearch`` and
``training`` use what this module names; the modules under it import one another directly,
never this one."""

from indexer.build import IndexBuildError
from indexer.cars import Added, NewPhoto, NoSuchCar, NoSuchPhoto, OnReused, TooManyPhotos
from indexer.copies import CopySignal, signal_of
from indexer.covers import IndexedCar
from indexer.cursor import CursorError
from indexer.dataset_export import HOLDOUT, ExportError, export_dataset
from indexer.engines.base import (
    CollectionHeld,
    CollectionMissing,
    Query,
    Recommend,
    StoreError,
    single_attempt,
)
from indexer.errors_report import write_skipped
from indexer.fields import (
    BUILT_IN,
    CAR_ID,
    MAX_EXTERNAL_ID,
    AttributeValue,
    Condition,
    FieldError,
)
from indexer.gate import GATE_KEY, GateError, GateRefused
from indexer.index import CarIndex
from indexer.listing import ExternalIdTaken, UnknownCars
from indexer.payload import (
    DENSITY,
    MAX_VIEW,
    CarFields,
    CarFilter,
    CarPayload,
    Listing,
    StoredCar,
    photo_id,
    point_id,
)
from indexer.reuse import PhotoReused, Reused, audit, reused_by_car
from indexer.served import IndexNotReady
from indexer.settings import StoreSettings
from indexer.store_format import OlderStore
from indexer.versions import parse_collection_name

__all__ = [
    "BUILT_IN",
    "CAR_ID",
    "DENSITY",
    "GATE_KEY",
    "HOLDOUT",
    "MAX_EXTERNAL_ID",
    "MAX_VIEW",
    "Added",
    "AttributeValue",
    "CarFields",
    "CarFilter",
    "CarIndex",
    "CarPayload",
    "CollectionHeld",
    "CollectionMissing",
    "Condition",
    "CopySignal",
    "CursorError",
    "ExportError",
    "ExternalIdTaken",
    "FieldError",
    "GateError",
    "GateRefused",
    "IndexBuildError",
    "IndexNotReady",
    "IndexedCar",
    "Listing",
    "NewPhoto",
    "NoSuchCar",
    "NoSuchPhoto",
    "OlderStore",
    "OnReused",
    "PhotoReused",
    "Query",
    "Recommend",
    "Reused",
    "StoreError",
    "StoreSettings",
    "StoredCar",
    "TooManyPhotos",
    "UnknownCars",
    "audit",
    "export_dataset",
    "parse_collection_name",
    "photo_id",
    "point_id",
    "reused_by_car",
    "signal_of",
    "single_attempt",
    "write_skipped",
]
