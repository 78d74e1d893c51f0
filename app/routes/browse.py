"""The gallery as a list: pages of cars under a filter, a car by its external id, and counts
per field value (facets) for filter menus."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.car_schemas import Car, CarList
from app.deps import ServicesDep, conditions, on_serving, require_read_key
from app.problems import Problem
from app.schemas import FacetResponse, FacetValue, FieldInfo, FieldsResponse
from indexer import BUILT_IN, MAX_EXTERNAL_ID, CarFilter

router = APIRouter(prefix="/api/v1", tags=["browse"], dependencies=[Depends(require_read_key)])

FilterParam = Annotated[
    str | None,
    Query(
        max_length=4000,
        description="a JSON object over built-in fields and declared attributes, as in search: "
        '{"make": ["Audi", "BMW"], "price": {"lte": 20000}}',
    ),
]


@router.get(
    "/cars",
    name="list_cars",
    response_model=CarList,
    summary="The cars, a page at a time (every car once across the pages)",
)
async def list_cars(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="next_cursor of the previous page")
    ] = None,
    filter: FilterParam = None,
) -> CarList:
    where = CarFilter(where=conditions(services, filter))
    cars, following = await on_serving(
        services, services.model, services.index.listings.page, where, limit, cursor
    )
    return CarList(cars=[Car.of(c) for c in cars], next_cursor=following)


@router.get(
    "/cars/external/{external_id:path}",
    name="get_car_by_external_id",
    response_model=Car,
    summary="The car with this external id",
)
async def by_external_id(services: ServicesDep, external_id: str) -> Car:
    if len(external_id) > MAX_EXTERNAL_ID:
        raise Problem(404, "not-found", "No such car", "external ids have at most 200 characters")
    car = await on_serving(
        services, services.model, services.index.listings.by_external_id, external_id
    )
    if car is None:
        raise Problem(404, "not-found", "No such car", f"no car with external id {external_id}")
    return Car.of(car)


@router.get(
    "/facets",
    name="facets",
    response_model=FacetResponse,
    summary="How many cars have each value of a field (under a filter)",
)
async def facets(
    services: ServicesDep,
    field: Annotated[
        str,
        Query(
            max_length=64,
            description="make, model, body, class_name, source, year, or a declared keyword, bool "
            "or integer attribute",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    filter: FilterParam = None,
) -> FacetResponse:
    where = CarFilter(where=conditions(services, filter))
    values = await on_serving(
        services, services.model, services.index.listings.facet, field, where, limit
    )
    return FacetResponse(field=field, values=[FacetValue(value=v, count=c) for v, c in values])


@router.get(
    "/fields",
    name="fields",
    response_model=FieldsResponse,
    summary="The fields filters accept and facets count, with their kinds",
)
async def fields(services: ServicesDep) -> FieldsResponse:
    schema = services.index.fields
    faceted = set(schema.facet_fields())
    return FieldsResponse(
        fields=[
            FieldInfo(name=name, kind=kind, attribute=name not in BUILT_IN, facet=name in faceted)
            for name, kind in schema.kinds().items()
        ]
    )
