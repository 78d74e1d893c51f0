from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import AppSettings
from carembed.artifact import save_model
from carembed.model import build_model
from carsearch.cli import _with_default_index_action, build_parser, main
from carsearch.options import settings_of
from indexer.settings import StoreSettings
from tests.conftest import scene


def test_model_info_of_a_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = build_model(head="linear", embedding_dim=96)
    version = save_model(model, tmp_path)
    assert main(["model", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert version in out and "linear 1280 -> 96" in out and "224x224 squash" in out


def test_model_flip_turns_test_time_flip_on_and_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = save_model(build_model(head="linear", embedding_dim=16), tmp_path)
    assert main(["model", "flip", str(tmp_path), "on"]) == 0
    assert "rebuild the index" in capsys.readouterr().out
    assert main(["model", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test-time flip  on" in out and before not in out
    assert main(["model", "flip", str(tmp_path), "off"]) == 0
    assert main(["model", "info", str(tmp_path)]) == 0
    assert before in capsys.readouterr().out  # off again: the same model as before


def test_embed_prints_dim_norms_version_and_nearest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for name, img in [("a", scene(1)), ("b", scene(2)), ("a2", scene(1).rotate(3))]:
        paths.append(tmp_path / f"{name}.png")
        img.save(paths[-1])
    assert main(["embed", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert (
        "dim 1280" in out
        and "norms min 1.0000" in out
        and "model version efficientnetlite0-identity-" in out
    )
    assert f"{paths[0]} -> {paths[2]}" in out and f"{paths[2]} -> {paths[0]}" in out


def test_embed_bad_file_and_bad_model_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert main(["embed", str(bad)]) == 2
    assert main(["model", "info", str(tmp_path)]) == 2


def test_index_reads_the_model_from_the_environment_like_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The compose indexer names no --model: CARSEARCH_MODEL_DIR is the model it indexes with."""
    from tests.indexer.conftest import make_gallery

    model = build_model("mobilenet_v2", head="linear", embedding_dim=64)
    version = save_model(model, tmp_path / "model")
    monkeypatch.setenv("CARSEARCH_MODEL_DIR", str(tmp_path / "model"))
    gallery = make_gallery(tmp_path / "gallery", per_class=1)
    store = ["--qdrant-path", str(tmp_path / "q")]
    assert main(["index", "--gallery", str(gallery), "--workers", "0", *store]) == 0
    capsys.readouterr()
    assert main(["index", "status", *store]) == 0
    out = capsys.readouterr().out
    assert f"live embedding version {version}-f32 " in " ".join(out.split())
    assert "engine edge" in " ".join(out.split()) and "points 3" in " ".join(out.split())


def test_serve_workers_need_a_qdrant_server_and_a_built_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ["--qdrant-path", str(tmp_path / "qdrant"), "--data-dir", str(tmp_path / "data")]
    assert main(["serve", "--workers", "2", *store]) == 2
    assert "needs a Qdrant server" in caplog.text
    assert not (tmp_path / "qdrant").exists()  # refused before anything was opened
    server = ["--qdrant-url", "http://127.0.0.1:9", "--gallery", str(tmp_path)]
    assert main(["serve", "--workers", "2", *server]) == 2
    assert "index the gallery first" in caplog.text


def test_index_alone_means_build_and_a_gallery_named_index_stays_a_gallery() -> None:
    assert _with_default_index_action(["index", "--gallery", "g"]) == [
        "index",
        "build",
        "--gallery",
        "g",
    ]
    assert _with_default_index_action(["index", "status"]) == ["index", "status"]
    assert _with_default_index_action(["serve", "--gallery", "index"]) == [
        "serve",
        "--gallery",
        "index",
    ]
    args = build_parser().parse_args(["serve", "--gallery", "index", "--model", "zero-shot"])
    settings = settings_of(args, AppSettings)
    assert (settings.gallery, settings.model_dir) == (Path("index"), Path("zero-shot"))


def test_every_setting_is_a_flag_over_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commands' flags come from the settings classes: a flag wins over
    ``CARSEARCH_<FIELD>``, which wins over the default; booleans have a --no- form."""
    monkeypatch.setenv("CARSEARCH_ALIAS", "from-env")
    monkeypatch.setenv("CARSEARCH_GATE_MARGIN", "0.02")
    parser = build_parser()
    args = parser.parse_args(["index", "build", "--gallery", "g", "--no-gate", "--hnsw-m", "32"])
    store = settings_of(args, StoreSettings)
    assert (store.alias, store.gate, store.gate_margin, store.hnsw_m) == (
        "from-env",
        False,
        0.02,
        32,
    )
    assert store.gate_policy() is None
    args = parser.parse_args(["index", "build", "--gallery", "g", "--force", "--alias", "a"])
    store = settings_of(args, StoreSettings)
    policy = store.gate_policy()
    assert store.alias == "a" and policy is not None and policy.force
    args = parser.parse_args(["serve", "--no-int8", "--cors-origins", '["http://a.example"]'])
    app = settings_of(args, AppSettings)
    assert (app.int8, app.cors_origins, app.alias) == (False, ["http://a.example"], "from-env")
    # A value of the wrong kind is a clear error naming the flag, before anything runs.
    assert main(["serve", "--max-batch", "x"]) == 2
    assert main(["index", "status", "--alias", "a__b"]) == 2


def test_the_cli_keeps_its_onnx_graphs_and_reports_in_the_data_folder_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data folder's paths have one owner (``indexer.layout``): a build with --data-dir
    writes its ONNX graph and its skipped-files report where the service looks, not in ./data."""
    from tests.indexer.conftest import make_gallery

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARSEARCH_ENGINE", "onnx")
    gallery = make_gallery(tmp_path / "gallery", per_class=1)
    (gallery / "Audi_TTS_Coupe_2012" / "broken.jpg").write_bytes(b"not a photo")
    store = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "mine")]
    build = ["index", "--gallery", str(gallery), "--workers", "0", "--max-failure-share", "0.5"]
    assert main([*build, *store]) == 0
    assert list((tmp_path / "mine" / "onnx").glob("*.onnx"))
    assert "broken.jpg" in (tmp_path / "mine" / "index-skipped.jsonl").read_text()
    assert not (tmp_path / "data").exists()


def test_reused_writes_the_groups_of_cars_that_share_a_photo(tmp_path: Path) -> None:
    import csv
    import io

    from carembed.embedder import Embedder
    from indexer.cars import NewPhoto
    from indexer.copies import signal_of
    from indexer.index import CarIndex
    from indexer.payload import CarFields, Listing

    settings = StoreSettings(qdrant_path=tmp_path / "q", data_dir=tmp_path / "d")
    index = CarIndex.open(settings)
    embedder = Embedder(build_model("mobilenet_v2"), batch_size=2)
    index.ensure_live(embedder)
    photo = io.BytesIO()
    scene(31, size=(320, 200)).save(photo, "JPEG", quality=90)
    shared = photo.getvalue()
    vector = embedder.embed([shared])[0]
    added = []
    for listing in ("a", "b"):
        new = NewPhoto(shared, "jpeg", (320, 200), vector, signal=signal_of(shared))
        car = index.cars.add(embedder.version, [new], CarFields(), Listing(external_id=listing))
        added.append(car.car.id)
    alone = io.BytesIO()
    scene(32, size=(320, 200)).save(alone, "JPEG", quality=90)
    index.add_photo(
        embedder.version,
        alone.getvalue(),
        "jpeg",
        (320, 200),
        embedder.embed([alone.getvalue()])[0],
        CarFields(),
    )
    index.close()
    out = tmp_path / "report.csv"
    store = ["--qdrant-path", str(tmp_path / "q"), "--data-dir", str(tmp_path / "d")]
    assert main(["reused", "--out", str(out), *store]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and rows[0]["kind"] == "exact" and rows[0]["group"] == "0"
    assert {rows[0]["car_id"], rows[0]["other_car_id"]} == set(added)
    assert {rows[0]["external_id"], rows[0]["other_external_id"]} == {"a", "b"}


def test_every_training_option_is_a_flag_with_its_description() -> None:
    from carsearch.cli import build_parser
    from carsearch.train_commands import config_options
    from training.config import TrainConfig

    parser = build_parser()
    flags = ["--epochs", "2", "--devices", "2", "--no-refit", "--pooling", "gem"]
    flags += ["--image-size", "128", "--lr", "0.01", "--all-classes"]
    args = parser.parse_args(["train", "--data", "d", "--out", "o", *flags])
    config = TrainConfig(**config_options(args))
    assert (config.max_epochs, config.devices, config.refit, config.pooling) == (2, 2, False, "gem")
    assert (config.image_size, config.lr, config.all_classes) == (128, 0.01, True)
    assert config.head == TrainConfig.model_fields["head"].default  # not given: its default
    assert (
        parser.parse_args(["train", "--data", "d", "--out", "o", "--devices", "auto"]).devices
        == "auto"
    )
    train = next(
        a.choices["train"]
        for a in parser._subparsers._group_actions  # type: ignore[union-attr]
        if getattr(a, "choices", None) and "train" in a.choices
    )
    by_dest = {a.dest: a for a in train._actions}
    for name, field in TrainConfig.model_fields.items():
        assert name in by_dest, name
        if field.description:
            assert field.description in (by_dest[name].help or ""), name
