"""The naive baseline of ``benchmarks/serve.py``: what a first similar-image server looks like.

FastAPI with a plain ``def`` route (Starlette's thread pool), the photo decoded with PIL at full
size, the same model as carsearch (``--model``; default the shipped one) in eager PyTorch at
batch 1 per request, and a numpy brute-force cosine search over the same gallery vectors
carsearch indexed (``--vectors``, ``--payloads``).

    python benchmarks/naive_server.py --vectors V.npy --payloads P.json --port 8001 [--model M]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from carembed.artifact import load_or_default


def create_app(
    vectors: np.ndarray, payloads: list[dict[str, Any]], model_dir: Path | None
) -> FastAPI:
    model = load_or_default(model_dir)
    preprocessing = model.preprocessing
    app = FastAPI(title="naive baseline")

    @app.post("/api/v1/search")
    def search(image: UploadFile = File(...), limit: int = 10) -> dict[str, Any]:  # noqa: B008
        photo = Image.open(io.BytesIO(image.file.read())).convert("RGB")
        x = torch.from_numpy(preprocessing.to_array(photo))[None]
        with torch.inference_mode():
            query = model(x)[0].numpy()
        scores = vectors @ query
        best = np.argsort(-scores)[:limit]
        return {"hits": [payloads[i] | {"score": float(scores[i])} for i in best]}

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", type=Path, required=True, help="(N, D) float32 .npy")
    parser.add_argument("--payloads", type=Path, required=True, help="JSON list of N objects")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    args = parser.parse_args()
    vectors = np.load(args.vectors)
    payloads = json.loads(args.payloads.read_text())
    app = create_app(vectors, payloads, args.model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
