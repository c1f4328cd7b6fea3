"""The Python tutorial stack loadgate is measured against: FastAPI + sentence-transformers.

Run: MODEL_DIR=models/all-MiniLM-L6-v2 uvicorn tutorial_app:app --workers 1 --port 8001
`embed` is a sync `def`, so FastAPI runs it on its thread pool and /health is not blocked by the
event loop: the stronger of the two common ways to write it.
"""
import os

from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ.get("MODEL_DIR", "models/all-MiniLM-L6-v2"), device="cpu")
app = FastAPI()


class EmbedRequest(BaseModel):
    texts: list[str]


@app.post("/embed")
def embed(request: EmbedRequest):
    vectors = model.encode(request.texts, normalize_embeddings=True)
    return {"embeddings": vectors.tolist()}


@app.get("/health")
def health():
    return {"status": "ok"}
