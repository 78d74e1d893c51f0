"""The car index: a gallery of car photos embedded into a vector store behind one alias, built,
rebuilt after retraining and rolled out without losing a write. ``app``, ``carsearch`` and
``training`` use what this module names; the modules under it import one another directly,
never this one."""

from indexer.build import IndexBuildError
from indexer.cars import Added, NewPhoto, NoSuchCar, NoSuchPhoto, OnReused, TooManyPhotos
from indexer.copies import CopySignal, signal_of
from indexer.covers import IndexedCar
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
from indexer.listing import CursorError, ExternalIdTaken, UnknownCars
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
from indexer.versions import parse_collection_name

__all__ = [
    # the index and its settings
    "CarIndex",
    "StoreSettings",
    "parse_collection_name",
    # cars, their photos and fields
    "Added",
    "AttributeValue",
    "BUILT_IN",
    "CAR_ID",
    "CarFields",
    "CarFilter",
    "CarPayload",
    "Condition",
    "DENSITY",
    "IndexedCar",
    "Listing",
    "MAX_EXTERNAL_ID",
    "MAX_VIEW",
    "NewPhoto",
    "OnReused",
    "StoredCar",
    "photo_id",
    "point_id",
    # queries
    "Query",
    "Recommend",
    "single_attempt",
    # re-used photos
    "CopySignal",
    "Reused",
    "audit",
    "reused_by_car",
    "signal_of",
    # builds, the rollout gate, the export
    "GATE_KEY",
    "HOLDOUT",
    "export_dataset",
    "write_skipped",
    # errors
    "CollectionHeld",
    "CollectionMissing",
    "CursorError",
    "ExportError",
    "ExternalIdTaken",
    "FieldError",
    "GateError",
    "GateRefused",
    "IndexBuildError",
    "IndexNotReady",
    "NoSuchCar",
    "NoSuchPhoto",
    "PhotoReused",
    "StoreError",
    "TooManyPhotos",
    "UnknownCars",
]
