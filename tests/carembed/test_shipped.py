"""The shipped car model: package data, the default of every command, stable, with its int8
graph and licence; ``zero-shot`` names the ImageNet model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from carembed.artifact import (
    CONFIG_FILE,
    INT8_FILE,
    ZERO_SHOT,
    load_model,
    load_or_default,
    shipped_model_dir,
)
from carembed.backends import graph_version
from carembed.cpu import int8_sums
from carembed.embedder import Embedder
from carembed.int8_files import CHECK_KEY, int8_check
from carembed.model import build_model
from carembed.quantize import INT8_MARGIN, recheck_int8, stamp

ROOT = Path(__file__).resolve().parents[2]
DATASET = ROOT.parent / "shared" / "datasets" / "stanford-cars-dev"


def _config() -> dict[str, object]:
    return json.loads((shipped_model_dir() / CONFIG_FILE).read_text())  # type: ignore[no-any-return]


def test_the_default_is_the_shipped_model_and_zero_shot_is_one_word_away() -> None:
    shipped = load_or_default(None)
    assert shipped.source_dir == shipped_model_dir()
    assert shipped.config.training["recipe"] == "partial"
    zero_shot = load_or_default(Path(ZERO_SHOT))
    assert zero_shot.source_dir is None
    assert zero_shot.version() == build_model().version() != shipped.version()


def test_its_version_is_stable_and_recorded_with_its_int8_graph() -> None:
    version = load_model(shipped_model_dir()).version()
    assert version == load_model(shipped_model_dir()).version() == _config()["model_version"]
    assert graph_version(shipped_model_dir() / INT8_FILE) == version


def test_it_records_its_training_data_recipe_and_commit() -> None:
    training = _config()["training"]
    assert isinstance(training, dict)
    assert training["data"] == "stanford-cars-dev"
    assert training["classes"] == len(training["class_names"]) == 136
    assert training["photos"] > 5000
    assert training["hyperparameters"]["all_classes"] is True
    assert training["hyperparameters"]["seed"] == 0
    assert re.fullmatch(r"[0-9a-f]{40}", training["git_commit"])


def test_its_int8_graph_passed_the_gate() -> None:
    report = int8_check(shipped_model_dir() / INT8_FILE)
    assert report is not None and report.kept
    assert report.drop < 0.005
    assert report.int8_img_s > report.fp32_img_s
    assert report.int8_batch1_img_s > report.fp32_batch1_img_s


def test_the_folder_fits_the_size_budget_and_states_its_licence() -> None:
    files = [p for p in shipped_model_dir().iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    licence = (shipped_model_dir() / "LICENSE.md").read_text()
    assert "Stanford Cars" in licence and "non-commercial" in licence


def test_the_docker_image_and_the_package_carry_the_folder() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY carembed carembed$", dockerfile, re.M)
    ignored = ROOT / ".dockerignore"
    assert not ignored.exists() or "carembed" not in ignored.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^"carembed" = \["shipped/\*"\]$', pyproject, re.M)
    assert {p.name for p in shipped_model_dir().iterdir()} >= {
        CONFIG_FILE,
        "model.safetensors",
        INT8_FILE,
        "LICENSE.md",
    }


@pytest.mark.slow
def test_the_installed_package_loads_it_offline(tmp_path: Path) -> None:
    """A non-editable install (as the Docker image and ``pip install .`` make) holds the model;
    it loads from there with the network refused."""
    site, source = tmp_path / "site", tmp_path / "source"
    for name in ("carembed", "carsearch", "app", "indexer", "training"):  # builds write there
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    script = textwrap.dedent(
        """
        import json, socket, sys
        def refuse(*args, **kwargs):
            raise OSError("no network")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import carembed
        from carembed.artifact import load_or_default
        model = load_or_default(None)
        print(json.dumps({"package": carembed.__file__, "folder": str(model.source_dir),
                          "version": model.version()}))
        """
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "CARSEARCH_MODEL_DIR": ""}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site))
    assert found["folder"].startswith(str(site))
    assert found["version"] == load_model(shipped_model_dir()).version()


@pytest.mark.slow
@pytest.mark.skipif(not DATASET.is_dir(), reason="the dev set is not beside the checkout")
def test_its_int8_graph_keeps_within_the_margin_wherever_auto_runs_it(tmp_path: Path) -> None:
    """On this machine, scored on the photos its check used: where ``auto`` runs the int8
    graph (a CPU that sums int8 products as the one it was checked on), it keeps within the
    check's margin of the float32 graph here; elsewhere ``auto`` runs float32."""
    report = int8_check(shipped_model_dir() / INT8_FILE)
    assert report is not None and report.cpu and report.int8_sums is not None
    match = re.fullmatch(r"(\w+) of .* \((\d+) photos\)", report.checked_on)
    assert match, report.checked_on
    auto = Embedder(load_or_default(None), engine="auto", onnx_dir=tmp_path)
    if not report.holds_here():
        assert auto.backend == "onnx"
        return
    assert auto.backend == "onnx-int8"
    here = recheck_int8(None, DATASET, match.group(1), tmp_path)
    assert here.checked_on.endswith(f"({match.group(2)} photos)")
    assert here.fp32_r_precision - here.int8_r_precision < INT8_MARGIN


def test_auto_runs_float32_where_the_cpu_sums_int8_products_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A graph checked on a CPU that sums int8 products otherwise than this one: ``auto``
    runs float32 and says why; ``onnx-int8`` (or a collection of int8 vectors) runs it."""
    folder = tmp_path / "model"
    shutil.copytree(shipped_model_dir(), folder)
    report = int8_check(folder / INT8_FILE)
    assert report is not None
    other = "exact" if int8_sums() == "16-bit pairs" else "16-bit pairs"
    stamp(
        folder / INT8_FILE,
        {CHECK_KEY: report.model_copy(update={"int8_sums": other}).model_dump_json()},
    )
    model = load_model(folder)
    with caplog.at_level("WARNING"):
        assert Embedder(model, engine="auto", onnx_dir=tmp_path).backend == "onnx"
    assert "--check-only" in caplog.text and other in caplog.text
    assert Embedder(model, engine="onnx-int8", onnx_dir=tmp_path).backend == "onnx-int8"
    required = Embedder(model, engine="auto", onnx_dir=tmp_path, precision="int8")
    assert required.backend == "onnx-int8"
