from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qdrant_client import QdrantClient

from carembed.embedder import Embedder
from carembed.model import build_model
from carembed.store import PREVIOUS_SUFFIX, QdrantSettings, StoreError, open_client, resolve_alias
from indexer.build import IndexBuildError, build_full, rollback, update_incremental
from tests.conftest import scene

ALIAS = "cars-test"


def _ids(client: QdrantClient, collection: str) -> set[str]:
    points, _ = client.scroll(collection, limit=1000)
    return {str(p.id) for p in points}


def test_full_build_aliases_and_an_indexed_image_is_its_own_top_hit(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    report = build_full(client, small_embedder, gallery, ALIAS, progress=False)
    live = resolve_alias(client, ALIAS)
    assert live == report.collection and report.indexed == 9 and report.total_points == 9
    assert client.count(ALIAS, exact=True).count == 9
    query = gallery / "BMW_M3_Coupe_2012" / "1.jpg"
    hit = client.query_points(ALIAS, query=small_embedder.embed([query])[0].tolist(), limit=1)
    top = hit.points[0]
    assert top.payload is not None and top.score == pytest.approx(1.0, abs=1e-4)
    assert top.payload["path"] == "BMW_M3_Coupe_2012/1.jpg"
    assert (top.payload["make"], top.payload["year"], top.payload["body"]) == ("BMW", 2012, "Coupe")
    assert (top.payload["width"], top.payload["height"]) == (160, 96)
    assert top.payload["model_version"] == small_embedder.version


def test_rerun_adds_nothing_and_duplicates_count_once(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    shutil.copy(gallery / "BMW_M3_Coupe_2012" / "0.jpg", gallery / "BMW_M3_Coupe_2012" / "copy.jpg")
    first = build_full(client, small_embedder, gallery, ALIAS, progress=False)
    assert first.duplicates == 1 and first.total_points == 9
    again = update_incremental(client, small_embedder, gallery, ALIAS, progress=False)
    assert (again.indexed, again.unchanged, again.deleted, again.total_points) == (0, 9, 0, 9)


def test_incremental_adds_and_removes(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    build_full(client, small_embedder, gallery, ALIAS, progress=False)
    (gallery / "Audi_TTS_Coupe_2012" / "0.jpg").unlink()
    scene(999).save(gallery / "Audi_TTS_Coupe_2012" / "new.jpg")
    report = update_incremental(client, small_embedder, gallery, ALIAS, progress=False)
    assert (report.indexed, report.deleted, report.total_points) == (1, 1, 9)
    paths = {p.payload["path"] for p in client.scroll(ALIAS, limit=100)[0] if p.payload}
    assert "Audi_TTS_Coupe_2012/new.jpg" in paths and "Audi_TTS_Coupe_2012/0.jpg" not in paths


def test_incremental_refuses_another_model(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    build_full(client, small_embedder, gallery, ALIAS, progress=False)
    other = Embedder(build_model("mobilenet_v2", head="linear", embedding_dim=1280))
    with pytest.raises(IndexBuildError, match="full build"):
        update_incremental(client, other, gallery, ALIAS, progress=False)


def test_rebuild_keeps_previous_for_rollback_and_deletes_older(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    first = build_full(client, small_embedder, gallery, ALIAS, progress=False).collection
    unchanged = build_full(client, small_embedder, gallery, ALIAS, progress=False)
    # Same model, same files: the live collection stays, nothing is written.
    assert unchanged.collection == first and unchanged.indexed == 0
    scene(4000).save(gallery / "BMW_M3_Coupe_2012" / "more.jpg")
    rebuilt = build_full(client, small_embedder, gallery, ALIAS, progress=False)
    # Same model: unchanged images' vectors are copied from the live collection.
    assert (rebuilt.indexed, rebuilt.unchanged, rebuilt.total_points) == (1, 9, 10)
    second = rebuilt.collection
    assert second != first and resolve_alias(client, ALIAS + PREVIOUS_SUFFIX) == first
    scene(4001).save(gallery / "BMW_M3_Coupe_2012" / "more2.jpg")
    third = build_full(client, small_embedder, gallery, ALIAS, progress=False).collection
    names = {c.name for c in client.get_collections().collections}
    assert first not in names and {second, third} <= names
    assert rollback(client, ALIAS) == second
    assert resolve_alias(client, ALIAS) == second
    assert resolve_alias(client, ALIAS + PREVIOUS_SUFFIX) == third


def test_interrupted_build_leaves_alias_and_resumes_to_the_right_count(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    live = build_full(client, small_embedder, gallery, ALIAS, progress=False).collection
    other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=2)
    calls: list[int] = []

    def crash_after_two(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_full(client, other, gallery, ALIAS, on_batch=crash_after_two, progress=False)
    assert resolve_alias(client, ALIAS) == live  # still serving the old collection
    assert client.count(ALIAS, exact=True).count == 9
    report = build_full(client, other, gallery, ALIAS, progress=False)
    assert calls == [2, 4]
    assert report.unchanged == 4 and report.indexed == 5  # two batches of two were kept
    assert client.count(ALIAS, exact=True).count == 9
    assert resolve_alias(client, ALIAS) == report.collection != live


def test_bad_files_are_skipped_reported_and_fail_past_the_share(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    (gallery / "BMW_M3_Coupe_2012" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    Image.new("RGB", (20, 20)).save(gallery / "BMW_M3_Coupe_2012" / "tiny.png")
    with pytest.raises(IndexBuildError, match="could not be used"):
        build_full(client, small_embedder, gallery, ALIAS, progress=False)
    assert resolve_alias(client, ALIAS) is None  # nothing was switched
    report = build_full(
        client, small_embedder, gallery, ALIAS, max_failure_share=0.5, progress=False
    )
    reasons = dict(report.skipped)
    assert reasons["BMW_M3_Coupe_2012/broken.jpg"].startswith("unreadable")
    assert reasons["BMW_M3_Coupe_2012/tiny.png"].startswith("too-small")
    assert report.total_points == 9


def test_embedded_folder_held_by_another_client_is_a_clear_error(tmp_path: Path) -> None:
    settings = QdrantSettings(qdrant_path=tmp_path / "q")
    holder = open_client(settings)
    try:
        with pytest.raises(StoreError, match="open in another process"):
            open_client(settings)
    finally:
        holder.close()


def test_cli_index_build_incremental_rollback(gallery: Path, tmp_path: Path) -> None:
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
    assert main([*args, "--max-failure-share", "0.2", *common]) == 0  # a new collection
    assert main(["index", "rollback", *common]) == 0
    client = open_client(QdrantSettings(qdrant_path=tmp_path / "q"))
    try:
        vectors = client.scroll(ALIAS, limit=100, with_vectors=True)[0]
        norms = [np.linalg.norm(p.vector) for p in vectors]
        assert len(vectors) == 9 and np.allclose(norms, 1.0, atol=1e-4)  # rolled back
    finally:
        client.close()


def test_queries_during_rebuilds_never_fail(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    import threading

    build_full(client, small_embedder, gallery, ALIAS, progress=False)
    vector = small_embedder.embed([gallery / "BMW_M3_Coupe_2012" / "0.jpg"])[0].tolist()
    errors: list[BaseException] = []
    answered: list[int] = []
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            try:
                answered.append(len(client.query_points(ALIAS, query=vector, limit=3).points))
            except BaseException as exc:  # any failure at all is what this test looks for
                errors.append(exc)

    thread = threading.Thread(target=query_loop)
    thread.start()
    try:
        other = Embedder(build_model("mobilenet_v2", pooling="gem"), batch_size=4)
        for embedder in (other, small_embedder, other):  # three alias moves, old ones deleted
            build_full(client, embedder, gallery, ALIAS, progress=False)
    finally:
        stop.set()
        thread.join()
    assert not errors and answered and set(answered) == {3}


def test_cars_added_through_the_api_survive_a_rebuild_with_the_same_model(
    client: QdrantClient, small_embedder: Embedder, gallery: Path
) -> None:
    from qdrant_client import models

    build_full(client, small_embedder, gallery, ALIAS, progress=False)
    vector = small_embedder.embed([scene(9999)])[0].tolist()
    upload_id = "7d3c1a52-0b7e-4c55-9a0e-1f2a3b4c5d6e"
    client.upsert(
        ALIAS,
        points=[models.PointStruct(id=upload_id, vector=vector, payload={"source": "upload"})],
    )
    scene(4002).save(gallery / "Audi_TTS_Coupe_2012" / "extra.jpg")
    report = build_full(client, small_embedder, gallery, ALIAS, progress=False)
    assert report.total_points == 11  # 10 gallery photos + the uploaded car
    assert client.retrieve(ALIAS, ids=[upload_id])[0].payload == {"source": "upload"}
    again = update_incremental(client, small_embedder, gallery, ALIAS, progress=False)
    assert (again.deleted, again.total_points) == (0, 11)
