"""The car index's behaviour on both engines (the ``index`` fixture runs each test on each):
Qdrant Edge, and the server adapter against the Qdrant server at QDRANT_URL or, without one,
against qdrant-client's local mode."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.build import IndexBuildError
from indexer.gate import GatePolicy
from indexer.index import CarIndex
from indexer.payload import CarFields, CarFilter
from indexer.served import IndexNotReady
from indexer.versions import AliasState
from tests.conftest import scene
from tests.indexer.conftest import ALIAS, jpeg


def _search(index: CarIndex, embedder: Embedder, vector: np.ndarray, **kw: object) -> list:  # type: ignore[type-arg]
    where = kw.pop("where", CarFilter())
    return index.search(index.serving(embedder.version), vector, where, int(kw.pop("limit", 10)))  # type: ignore[arg-type, call-overload]


def _paths(index: CarIndex, collection: str) -> set[str]:
    return {str(p.get("path")) for _, p in index.engine.scroll(collection, ["path"])}


def test_full_build_aliases_and_an_indexed_image_is_its_own_top_hit(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    report = index.build(small_embedder, gallery, progress=False)
    state = index.state()
    assert state.live == report.collection and state.previous is None
    assert report.indexed == 9 and report.total_points == 9 == index.count(state.live)
    query = small_embedder.embed([gallery / "BMW_M3_Coupe_2012" / "1.jpg"])[0]
    top = _search(index, small_embedder, query, limit=1)[0]
    assert top.score == pytest.approx(1.0, abs=1e-4)
    assert top.payload.path == "BMW_M3_Coupe_2012/1.jpg"
    assert (top.payload.make, top.payload.year, top.payload.body) == ("BMW", 2012, "Coupe")
    assert (top.payload.width, top.payload.height) == (160, 96)
    assert top.payload.model_version == small_embedder.version
    status = index.status()
    assert (status.live, status.points, status.live_embedding_version) == (
        report.collection,
        9,
        small_embedder.version,
    )


def test_results_match_exact_cosine_and_filters_apply(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    files = sorted(gallery.glob("*/*.jpg"))
    vectors = small_embedder.embed(files)
    query = small_embedder.embed([scene(7)])[0]
    expected = [str(files[i].relative_to(gallery)) for i in np.argsort(-(vectors @ query))]
    hits = _search(index, small_embedder, query, limit=9)
    assert [h.payload.path for h in hits] == expected  # the exact cosine order
    assert [h.score for h in hits] == pytest.approx(sorted(vectors @ query, reverse=True), abs=1e-4)
    bmw = _search(index, small_embedder, query, where=CarFilter(make="BMW"))
    assert [h.payload.path for h in bmw] == [p for p in expected if p.startswith("BMW")]
    coupes = _search(index, small_embedder, query, where=CarFilter(body="Coupe", year_min=2012))
    assert len(coupes) == 6 and {h.payload.body for h in coupes} == {"Coupe"}
    assert _search(index, small_embedder, query, where=CarFilter(year_max=2011)) == []
    first = hits[0].id
    others = _search(index, small_embedder, query, where=CarFilter(exclude_ids=frozenset({first})))
    assert first not in {h.id for h in others} and len(others) == 8
    page = index.search(index.serving(small_embedder.version), query, CarFilter(), 2, offset=3)
    assert [h.payload.path for h in page] == expected[3:5]
    above = index.search(
        index.serving(small_embedder.version), query, CarFilter(), 9, score_threshold=hits[2].score
    )
    assert len(above) in (2, 3) and all(h.score >= hits[2].score - 1e-6 for h in above)


def test_rerun_adds_nothing_and_duplicates_count_once(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    shutil.copy(gallery / "BMW_M3_Coupe_2012" / "0.jpg", gallery / "BMW_M3_Coupe_2012" / "copy.jpg")
    first = index.build(small_embedder, gallery, progress=False)
    assert first.duplicates == 1 and first.total_points == 9
    again = index.update(small_embedder, gallery, progress=False)
    assert (again.indexed, again.unchanged, again.deleted, again.total_points) == (0, 9, 0, 9)


def test_incremental_adds_and_removes_and_new_points_are_searchable(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    live = index.build(small_embedder, gallery, progress=False).collection
    (gallery / "Audi_TTS_Coupe_2012" / "0.jpg").unlink()
    scene(999).save(gallery / "Audi_TTS_Coupe_2012" / "new.jpg")
    report = index.update(small_embedder, gallery, progress=False)
    assert (report.indexed, report.deleted, report.total_points) == (1, 1, 9)
    paths = _paths(index, live)
    assert "Audi_TTS_Coupe_2012/new.jpg" in paths and "Audi_TTS_Coupe_2012/0.jpg" not in paths
    top = _search(index, small_embedder, small_embedder.embed([scene(999)])[0], limit=1)[0]
    assert top.payload.path == "Audi_TTS_Coupe_2012/new.jpg"


def test_incremental_refuses_another_model(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    other = Embedder(build_model("mobilenet_v2", head="linear", embedding_dim=1280))
    with pytest.raises(IndexBuildError, match="full build"):
        index.update(other, gallery, progress=False)


def test_rebuild_keeps_previous_for_rollback_and_deletes_older(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    first = index.build(small_embedder, gallery, progress=False).collection
    unchanged = index.build(small_embedder, gallery, progress=False)
    # Same model, same files: the live collection stays, nothing is written.
    assert unchanged.collection == first and unchanged.indexed == 0
    scene(4000).save(gallery / "BMW_M3_Coupe_2012" / "more.jpg")
    rebuilt = index.build(small_embedder, gallery, progress=False)
    # Same model: unchanged images' vectors are copied from the live collection.
    assert (rebuilt.indexed, rebuilt.unchanged, rebuilt.total_points) == (1, 9, 10)
    second = rebuilt.collection
    assert second != first and index.state() == AliasState(ALIAS, second, first)
    scene(4001).save(gallery / "BMW_M3_Coupe_2012" / "more2.jpg")
    third = index.build(small_embedder, gallery, progress=False).collection
    names = set(index.engine.collections())
    assert first not in names and {second, third} <= names
    assert index.rollback() == second
    assert index.state() == AliasState(ALIAS, second, third)
    assert index.count(second) == 10


def test_interrupted_build_leaves_alias_and_resumes_to_the_right_count(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    live = index.build(small_embedder, gallery, progress=False).collection
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=2)
    calls: list[int] = []

    def crash_after_two(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index.build(other, gallery, on_batch=crash_after_two, progress=False)
    assert index.state().live == live and index.count(live) == 9  # still serving the old one
    with pytest.raises(IndexNotReady):
        index.serving(other.version)
    report = index.build(other, gallery, progress=False)
    assert calls == [2, 4]
    assert report.unchanged == 4 and report.indexed == 5  # two batches of two were kept
    assert index.state() == AliasState(ALIAS, report.collection, live)
    assert index.count(report.collection) == 9


def test_an_interrupted_build_of_an_older_store_format_is_not_resumed(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    """A build left unfinished by an older carsearch is not written on: a new collection is
    built, and the older one goes with the other stale collections."""
    from indexer.store_format import FORMAT_KEY
    from indexer.versions import new_collection_name

    live = index.build(small_embedder, gallery, progress=False).collection
    unfinished = new_collection_name(index.alias, small_embedder.version)
    index.engine.create(unfinished, small_embedder.dim)
    index.engine.set_metadata(unfinished, {FORMAT_KEY: 2})
    index.engine.release({live})
    (gallery / "BMW_M3_Coupe_2012" / "new.jpg").write_bytes(jpeg(4243))
    report = index.build(small_embedder, gallery, progress=False)
    assert report.collection not in (live, unfinished)
    assert index.state() == AliasState(ALIAS, report.collection, live)
    assert unfinished not in index.engine.collections()


def test_bad_files_are_skipped_reported_and_fail_past_the_share(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    (gallery / "BMW_M3_Coupe_2012" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (20, 20)).save(gallery / "BMW_M3_Coupe_2012" / "tiny.png")
    with pytest.raises(IndexBuildError, match="could not be used"):
        index.build(small_embedder, gallery, progress=False)
    assert index.state().live is None  # nothing was switched
    report = index.build(small_embedder, gallery, max_failure_share=0.5, progress=False)
    reasons = dict(report.skipped)
    assert reasons["BMW_M3_Coupe_2012/broken.jpg"].startswith("unreadable")
    assert reasons["BMW_M3_Coupe_2012/tiny.png"].startswith("too-small")
    assert report.total_points == 9
    again = index.build(small_embedder, gallery, max_failure_share=0.5, progress=False)
    assert again.collection == report.collection and len(again.skipped) == 2  # nothing changed


def test_cars_added_and_deleted_are_searchable_at_once(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    live = index.serving(small_embedder.version)
    data = jpeg(9999)
    vector = small_embedder.embed([data])[0]
    car = index.add_photo(
        small_embedder.version,
        data,
        "jpeg",
        (10, 20),
        vector,
        CarFields(make="Lada", model="Niva", year=1990),
    )
    top = index.search(live, vector, CarFilter(), 1)[0]
    assert (
        top.id == car.id
        and top.payload.make == "Lada"
        and top.payload.class_name == "Lada Niva 1990"
    )
    assert index.search(live, vector, CarFilter(source="upload"), 5)[0].id == car.id
    stored = index.get(live, car.id, with_vector=True)
    assert stored is not None and np.allclose(stored.vector or [], vector, atol=1e-5)
    deleted = index.delete(car.id)
    assert deleted is not None and deleted.payload.make == "Lada"
    assert index.get(live, car.id) is None and index.count(live) == 9


def test_cars_added_through_the_api_survive_a_rebuild_with_the_same_model(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    data = jpeg(9999)
    vector = small_embedder.embed([data])[0]
    car = index.add_photo(
        small_embedder.version, data, "jpeg", (1, 1), vector, CarFields(make="Lada")
    )
    scene(4002).save(gallery / "Audi_TTS_Coupe_2012" / "extra.jpg")
    report = index.build(small_embedder, gallery, progress=False)
    assert report.total_points == 11  # 10 gallery photos + the uploaded car
    kept = index.get(report.collection, car.id)
    assert kept is not None and kept.payload.make == "Lada" and kept.payload.source == "upload"
    again = index.update(small_embedder, gallery, progress=False)
    assert (again.deleted, again.total_points) == (0, 11)


@pytest.mark.slow
def test_queries_during_rebuilds_never_fail(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    vector = small_embedder.embed([gallery / "BMW_M3_Coupe_2012" / "0.jpg"])[0]
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    errors: list[BaseException] = []
    answered: list[int] = []
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            try:  # a replica of the first model: its collection is live or previous throughout
                found = index.on_serving(
                    small_embedder.version, lambda c: index.search(c, vector, CarFilter(), 3)
                )
                answered.append(len(found))
            except BaseException as exc:  # any failure at all is what this test looks for
                errors.append(exc)

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        for embedder in (other, small_embedder, other):  # three alias moves, old ones deleted
            index.build(embedder, gallery, progress=False)
    finally:
        stop.set()
        thread.join()
    assert not errors and answered and set(answered) == {3}


def test_alias_names_with_double_underscores_are_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from indexer.settings import StoreSettings

    for bad in ("cars__eu", "_cars", "cars_", "", "a b", "c/d"):
        with pytest.raises(ValidationError, match="alias"):
            StoreSettings(qdrant_path=tmp_path, alias=bad)
    assert StoreSettings(qdrant_path=tmp_path, alias="cars_eu-2").alias == "cars_eu-2"


@pytest.mark.slow
def test_cli_index_build_incremental_rollback_status(gallery: Path, tmp_path: Path) -> None:
    from carsearch.cli import main

    common = ["--qdrant-path", str(tmp_path / "q"), "--alias", ALIAS]
    (gallery / "Tesla_Model_S_Sedan_2012" / "bad.jpg").write_bytes(b"nope")
    report = tmp_path / "skipped.jsonl"
    args = ["index", "--gallery", str(gallery), "--report", str(report), "--workers", "0"]
    assert main([*args, "--max-failure-share", "0.2", *common]) == 0
    assert [json.loads(line)["path"] for line in report.read_text().splitlines()] == [
        "Tesla_Model_S_Sedan_2012/bad.jpg"
    ]
    assert main(["index", "rollback", *common]) == 1  # one build: nothing to roll back to
    assert main([*args, "--max-failure-share", "0.01", *common]) == 1
    assert main([*args, "--incremental", "--max-failure-share", "0.2", *common]) == 0
    assert main([*args, "--max-failure-share", "0.2", *common]) == 0  # unchanged: stays
    assert main(["index", "rollback", *common]) == 1
    scene(77).save(gallery / "Tesla_Model_S_Sedan_2012" / "new.jpg")
    build_args = ["index", "build", "--gallery", str(gallery), "--report", str(report)]
    assert main([*build_args, "--max-failure-share", "0.2", *common]) == 0  # a new collection
    assert main(["index", "rollback", *common]) == 0
    from indexer.settings import StoreSettings

    index = CarIndex.open(StoreSettings(qdrant_path=tmp_path / "q", alias=ALIAS))
    try:
        state = index.state()
        assert state.live is not None and index.count(state.live) == 9  # rolled back
        vectors = [
            c.vector
            for c in index.engine.retrieve(
                state.live, [p for p, _ in index.engine.scroll(state.live, [])], with_vectors=True
            )
        ]
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    finally:
        index.close()
    assert main(["index", "status", "--json", *common]) == 0


_HOLDER = """
import sys, time
from indexer.index import CarIndex
from indexer.settings import StoreSettings
index = CarIndex.open(StoreSettings(qdrant_path=sys.argv[1], alias=sys.argv[2]))
first = index.serving(sys.argv[3])
index.count(first)  # opens (and so locks) the live collection
print("holding", first, flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # like a service: looks up what serves its model
    line = sys.stdin.readline()
    if not line:
        break
    time.sleep(2.5)  # past the lookup cache
    now = index.serving(sys.argv[3])
    print("serving", now, index.count(now), flush=True)
index.close()
"""


@pytest.mark.slow
def test_embedded_store_beside_another_process(
    small_embedder: Embedder, gallery: Path, tmp_path: Path
) -> None:
    """Another process (a service) holds the live collection: changing it in place is refused
    with a clear error, a full build writes its own collection beside it, and the other
    process moves to the new collection on its own."""
    import subprocess
    import sys

    from indexer.engines.base import StoreError
    from indexer.settings import StoreSettings

    settings = StoreSettings(qdrant_path=tmp_path / "qdrant", alias=ALIAS)
    index = CarIndex.open(settings)
    first = index.build(small_embedder, gallery, progress=False).collection
    index.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(settings.qdrant_path), ALIAS, small_embedder.version],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().split() == ["holding", first]
        index = CarIndex.open(settings)
        with pytest.raises(StoreError, match="open in another process"):
            index.update(small_embedder, gallery, progress=False)
        scene(5000).save(gallery / "BMW_M3_Coupe_2012" / "new.jpg")
        second = index.build(small_embedder, gallery, progress=False)
        assert second.collection != first and second.total_points == 10
        assert index.state() == AliasState(ALIAS, second.collection, first)
        index.close()
        holder.stdin.write("again\n")
        holder.stdin.flush()
        assert holder.stdout.readline().split() == ["serving", second.collection, "10"]
    finally:
        holder.kill()
        holder.wait()


def test_an_old_local_mode_folder_gets_a_clear_message(tmp_path: Path) -> None:
    from carsearch.cli import main
    from indexer.engines.base import StoreError
    from indexer.settings import StoreSettings

    old = tmp_path / "qdrant"
    (old / "collection" / "cars__x__20260101T000000").mkdir(parents=True)
    (old / "meta.json").write_text('{"collections": {}, "aliases": {"cars": "x"}}')
    with pytest.raises(StoreError, match=r"local mode.*rebuild"):
        CarIndex.open(StoreSettings(qdrant_path=old))
    assert main(["index", "status", "--qdrant-path", str(old)]) == 2


_KILLED_BUILD = """
import sys, time
from pathlib import Path
from carembed.embedder import Embedder
from carembed.model import build_model
from indexer.index import CarIndex
from indexer.settings import StoreSettings
index = CarIndex.open(StoreSettings(qdrant_path=sys.argv[1], alias=sys.argv[2]))
embedder = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=2)

def slow(done, total):
    print(done, flush=True)
    time.sleep(30)  # killed here, after the second confirmed batch

index.build(embedder, Path(sys.argv[3]), on_batch=lambda d, t: d >= 4 and slow(d, t),
            progress=False)
"""


@pytest.mark.slow
def test_a_sigkilled_build_leaves_the_alias_and_resumes_exactly(
    small_embedder: Embedder, gallery: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from indexer.settings import StoreSettings

    settings = StoreSettings(qdrant_path=tmp_path / "qdrant", alias=ALIAS)
    index = CarIndex.open(settings)
    live = index.build(small_embedder, gallery, progress=False).collection
    index.close()
    build = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, str(settings.qdrant_path), ALIAS, str(gallery)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert build.stdout is not None
    try:
        assert build.stdout.readline().strip() == "4"  # two batches of two written
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    assert build.returncode == -signal.SIGKILL
    index = CarIndex.open(settings)
    try:
        assert index.state() == AliasState(ALIAS, live, None)  # still serving the old one
        assert index.count(live) == 9
        other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=2)
        report = index.build(other, gallery, progress=False)
        assert (report.unchanged, report.indexed, report.total_points) == (4, 5, 9)
        assert index.state() == AliasState(ALIAS, report.collection, live)
        files = sorted(gallery.glob("*/*.jpg"))
        expected = {str(f.relative_to(gallery)) for f in files}
        assert _paths(index, report.collection) == expected
    finally:
        index.close()


def _upload(index: CarIndex, embedder: Embedder, seed: int, make: str) -> str:
    """A car added through the API (what the service does): ledger + the serving collection."""
    data = jpeg(seed)
    vector = embedder.embed([data])[0]
    car = index.add_photo(embedder.version, data, "jpeg", (160, 96), vector, CarFields(make=make))
    return car.id


def test_uploads_are_re_embedded_when_the_model_changes(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    car = _upload(index, small_embedder, 9001, "Lada")
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    report = index.build(other, gallery, progress=False)
    assert report.total_points == 10
    top = index.search(report.collection, other.embed([jpeg(9001)])[0], CarFilter(), 1)[0]
    assert top.id == car and top.score == pytest.approx(1.0, abs=1e-4)
    assert top.payload.make == "Lada" and top.payload.model_version == other.version


def test_deleted_cars_stay_deleted_across_incremental_and_full_builds(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    live = index.serving(small_embedder.version)
    gallery_car = next(
        pid
        for pid, p in index.engine.scroll(live, ["path"])
        if p["path"] == "BMW_M3_Coupe_2012/0.jpg"
    )
    upload = _upload(index, small_embedder, 9002, "Lada")
    photo = next(index.ledger.uploads_dir.glob("*.jpeg"))
    assert index.delete(gallery_car) is not None and index.delete(upload) is not None
    assert not photo.exists() and (gallery / "BMW_M3_Coupe_2012" / "0.jpg").exists()
    assert index.delete(upload) is None  # already gone
    again = index.update(small_embedder, gallery, progress=False)
    assert again.total_points == 8 and index.get(live, gallery_car) is None
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
    rebuilt = index.build(other, gallery, progress=False)
    ids = {pid for pid, _ in index.engine.scroll(rebuilt.collection, ["path"])}
    assert len(ids) == 8 and gallery_car not in ids and upload not in ids


def test_payload_changes_of_unchanged_photos_reach_the_index(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    first = index.build(small_embedder, gallery, progress=False).collection
    moved = gallery / "Tesla_Model_S_Sedan_2012" / "moved.jpg"
    shutil.move(gallery / "BMW_M3_Coupe_2012" / "2.jpg", moved)
    report = index.update(small_embedder, gallery, progress=False)
    assert (report.indexed, report.updated, report.deleted) == (0, 1, 0)
    car = _search(index, small_embedder, small_embedder.embed([moved])[0], limit=1)[0]
    assert (car.payload.path, car.payload.make, car.payload.class_name) == (
        "Tesla_Model_S_Sedan_2012/moved.jpg",
        "Tesla",
        "Tesla Model S Sedan 2012",
    )
    shutil.move(moved, gallery / "Audi_TTS_Coupe_2012" / "moved.jpg")
    rebuilt = index.build(small_embedder, gallery, progress=False)  # same model, same photos
    assert rebuilt.collection != first and rebuilt.indexed == 0  # vectors copied
    car = _search(
        index,
        small_embedder,
        small_embedder.embed([gallery / "Audi_TTS_Coupe_2012" / "moved.jpg"])[0],
        limit=1,
    )[0]
    assert (car.payload.make, car.payload.path) == ("Audi", "Audi_TTS_Coupe_2012/moved.jpg")


def test_cars_added_and_deleted_during_a_build_are_right_in_the_new_collection(
    index: CarIndex, small_embedder: Embedder, gallery: Path
) -> None:
    index.build(small_embedder, gallery, progress=False)
    live = index.serving(small_embedder.version)
    victim = next(
        pid
        for pid, p in index.engine.scroll(live, ["path"])
        if p["path"] == "Audi_TTS_Coupe_2012/1.jpg"
    )
    before = _upload(index, small_embedder, 9003, "Before")
    during: list[str] = []

    def meanwhile(done: int, total: int) -> None:  # the service, while the build runs
        if not during:
            during.append(_upload(index, small_embedder, 9004, "During"))
            assert index.delete(victim) is not None
            assert index.delete(before) is not None

    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=2)
    report = index.build(other, gallery, on_batch=meanwhile, progress=False)
    ids = {pid for pid, _ in index.engine.scroll(report.collection, ["source"])}
    assert during[0] in ids and victim not in ids and before not in ids
    assert len(ids) == report.total_points == 9  # 9 gallery - 1 deleted + 1 added
    added = index.get(report.collection, during[0])
    assert added is not None and added.payload.model_version == other.version


def test_an_alias_move_from_a_stale_state_is_refused_on_both_engines(
    index: CarIndex, small_embedder: Embedder
) -> None:
    """Two builds read the alias; the first moves it; the second's move, from the state it read,
    is refused and changes nothing (a compare-and-swap on both engines)."""
    from indexer.engines.base import StoreError
    from indexer.versions import AliasState

    index.engine.create("cars-test__a", small_embedder.dim)
    index.engine.create("cars-test__b", small_embedder.dim)
    read = index.state()
    index.engine.aliases.move(read, AliasState(read.alias, "cars-test__a", None))
    with pytest.raises(StoreError, match="moved by another process"):
        index.engine.aliases.move(read, AliasState(read.alias, "cars-test__b", None))
    assert index.state().live == "cars-test__a"


def test_stored_models_are_listed_with_their_collections_and_exported(
    index: CarIndex, gallery: Path, small_embedder: Embedder, tmp_path: Path
) -> None:
    from carembed.artifact import load_model
    from carsearch.stored_models import model_export, model_list

    live = index.build(small_embedder, gallery, progress=False).collection
    version = small_embedder.model_version  # the collection: its embedding version
    assert live.split("__")[1] == f"{version}-f32" == small_embedder.version
    assert index.model_copies.versions() == [version]
    lines: list[str] = []
    assert model_list(index, lines.append) == 0
    row = next(line for line in lines if line.startswith(version))
    assert f"{live} (live)" in row and "mobilenet_v2" in row

    assert model_export(index, version, tmp_path / "out", lines.append) == 0
    assert load_model(tmp_path / "out").version() == version
    with pytest.raises(LookupError, match=f"stored: {version}"):
        index.model_copies.export("efficientnetlite0-identity-000000000000", tmp_path / "none")
    missing = "efficientnetlite0-identity-000000000000"
    assert model_export(index, missing, tmp_path / "x", lines.append) == 2


def test_a_recalibrated_model_keeps_its_collection_and_its_stored_copy_follows(
    index: CarIndex, gallery: Path, small_embedder: Embedder
) -> None:
    import copy

    live = index.build(small_embedder, gallery, progress=False).collection
    model = copy.deepcopy(small_embedder.model)
    model.update_config(training={"calibration": {"k": 9, "temperature": 0.05}})
    recalibrated = Embedder(model, batch_size=4)
    assert recalibrated.version == small_embedder.version  # no vector changed: no rebuild
    report = index.update(recalibrated, gallery, progress=False)
    assert index.state().live == live and report.indexed == 0 < report.unchanged
    stored = index.model_copies.load(model.version())
    assert stored is not None and stored.config.training["calibration"]["k"] == 9
    config = index.model_copies.config(model.version())
    assert config is not None and config["training"]["calibration"]["temperature"] == 0.05


def test_a_collection_of_an_older_store_format_is_refused_and_rebuilt_whole(
    index: CarIndex, gallery: Path, small_embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    """A collection stamped with another store format is neither joined, served, synced in
    place nor reused: a full build embeds every photo again and replaces it without the
    quality gate."""
    from indexer.build import update_incremental
    from indexer.store_format import FORMAT_KEY, STORE_FORMAT, OlderStore

    older = index.build(small_embedder, gallery, progress=False).collection
    assert index.engine.metadata(older)[FORMAT_KEY] == STORE_FORMAT
    index.engine.set_metadata(older, index.engine.metadata(older) | {FORMAT_KEY: 2})
    another = CarIndex(index.engine, index.settings)  # another process's view of the store
    for _ in range(3):  # the follower's rounds: the older collection is warned of once
        another.served.join_all(small_embedder)
    warned = [r for r in caplog.records if "older carsearch" in r.getMessage()]
    assert len(warned) == 1 and older not in another.served.joined
    with pytest.raises(OlderStore, match="older carsearch: rebuild with `carsearch index"):
        index.served.join(older, small_embedder)
    with pytest.raises(OlderStore):
        index.serving(small_embedder.version)
    with pytest.raises(OlderStore):
        update_incremental(index.engine, small_embedder, gallery, index.alias, progress=False)
    report = index.build(small_embedder, gallery, progress=False, gate=GatePolicy())
    assert index.state().live == report.collection != older
    assert report.indexed == report.total_points > 0 and report.unchanged == 0  # none copied
    assert index.status().live_gate is None
    assert index.serving(small_embedder.version) == report.collection


def test_a_snapshot_is_the_servers_file_or_a_clear_refusal(
    index: CarIndex, gallery: Path, small_embedder: Embedder, tmp_path: Path
) -> None:
    import os

    from indexer.engines.base import StoreError

    out = tmp_path / "snapshots"
    with pytest.raises(IndexBuildError, match="no collection"):
        index.snapshot(out)
    index.build(small_embedder, gallery, progress=False)
    if index.engine.name == "server" and os.environ.get("QDRANT_URL"):
        target = index.snapshot(out)
        assert target.parent == out and target.stat().st_size > 0
        return
    with pytest.raises(StoreError, match="snapshots"):  # the embedded store; local mode
        index.snapshot(out)
    assert not out.exists() or not any(out.iterdir())


def test_a_stored_model_copy_takes_the_int8_graph_its_model_gains(
    index: CarIndex, tmp_path: Path
) -> None:
    import onnx
    from onnx import helper

    from carembed.artifact import INT8_FILE, load_model, save_model
    from carembed.backends import VERSION_KEY

    folder = tmp_path / "model"
    version = save_model(build_model("mobilenet_v2", head="linear", embedding_dim=8), folder)
    assert index.model_copies.save(load_model(folder)) == version
    assert set(index.engine.model_copies.get(version) or {}) == {"config.json", "model.safetensors"}
    # ``carsearch model quantize`` leaves an int8 graph of this version beside the weights.
    graph = helper.make_model(helper.make_graph([], "g", [], []))
    graph.metadata_props.add(key=VERSION_KEY, value=version)
    onnx.save(graph, str(folder / INT8_FILE))
    assert index.model_copies.save(load_model(folder)) == version
    stored = index.engine.model_copies.get(version) or {}
    assert stored[INT8_FILE] == (folder / INT8_FILE).read_bytes()
    assert index.engine.model_copies.get(version, [INT8_FILE]) == {INT8_FILE: stored[INT8_FILE]}
