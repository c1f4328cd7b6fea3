#!/usr/bin/env python3
"""Real clients against a running model-server, unchanged, as users call it:

- the `openai` client on /v1/embeddings (float and base64, and the 422 of an empty input);
- `huggingface_hub`'s InferenceClient(model=URL).feature_extraction, which posts to `POST /` as
  TEI serves it (what TEI users and LangChain's TEI integration call).

Each answer is checked against the other (same vectors, unit norm, 384 dimensions), so a client
that silently reads the wrong shape fails. Usage: real_clients.py http://127.0.0.1:PORT
"""

import base64
import math
import struct
import sys

import huggingface_hub
import openai

url = sys.argv[1].rstrip("/")
texts = ["The quick brown fox jumps over the lazy dog.", "Embeddings under load."]


def close(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
assert [d.index for d in floats.data] == [0, 1], floats
vectors = [d.embedding for d in floats.data]
assert all(len(v) == 384 for v in vectors), [len(v) for v in vectors]
assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vectors)
# Without encoding_format the client asks for base64 and decodes it itself (above); asked for
# explicitly, it hands back the base64 text of little-endian float32s, and so does float.
explicit_float = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="float")
assert all(close(d.embedding, v) for d, v in zip(explicit_float.data, vectors)), "float differs"
encoded = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="base64")
decoded = [list(struct.unpack(f"<{len(base64.b64decode(d.embedding)) // 4}f", base64.b64decode(d.embedding)))
           for d in encoded.data]
assert all(close(d, v) for d, v in zip(decoded, vectors)), "base64 differs from float"
try:
    client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
    raise AssertionError("an empty input was accepted")
except openai.UnprocessableEntityError as e:
    assert "no texts" in e.response.json()["error"], e.response.text
print(f"openai {openai.__version__}: /v1/embeddings float, base64 and 422 on empty input: ok")

hub = huggingface_hub.InferenceClient(model=url)
one = hub.feature_extraction(texts[0])
assert one.shape == (1, 384), one.shape
assert close([float(x) for x in one[0]], vectors[0]), "feature_extraction differs from /v1/embeddings"
raw = hub.feature_extraction(texts[1], normalize=True, truncate=True)
assert close([float(x) for x in raw[0]], vectors[1])
print(f"huggingface_hub {huggingface_hub.__version__}: InferenceClient.feature_extraction on POST /: ok")
