"""The naive baseline of ``benchmarks/serve.py``: what a first similar-image server looks like.

FastAPI with a plain ``def`` route (Starlette's thread pool), the photo decoded with PIL at full
size, eager PyTorch EfficientNet-Lite0 at batch 1 per request, and a numpy brute-force cosine
search over the same gallery vectors carsearch indexed (``--vectors``, ``--payloads``).

    python benchmarks/naive_server.py --vectors V.npy --payloads P.json --port 8001
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

from carembed.model import build_model


def create_app(vectors: np.ndarray, payloads: list[dict[str, Any]]) -> FastAPI:
    model = build_model("efficientnet_lite0").eval()
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
    args = parser.parse_args()
    vectors = np.load(args.vectors)
    payloads = json.loads(args.payloads.read_text())
    app = create_app(vectors, payloads)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
