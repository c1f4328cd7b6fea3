#!/usr/bin/env bash
# Builds bench/.venv with the Python tutorial stack (sentence-transformers on PyTorch, FastAPI,
# uvicorn) and ONNX Runtime (the engine TEI's CPU image, infinity and fastembed use) with onnx for
# the export. PyPI's torch wheel carries CUDA libraries: expect a multi-GB download once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -c "import sentence_transformers, fastapi, uvicorn, onnxruntime, onnx" 2>/dev/null && exit 0
.venv/bin/pip install --quiet --disable-pip-version-check sentence-transformers fastapi uvicorn onnxruntime onnx
