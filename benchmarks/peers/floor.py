"""The floor: the thinnest reasonable server of the same graph. FastAPI, onnxruntime, tokenizers, nothing else.

``python floor.py MODEL.onnx TOKENIZER.json PORT [THREADS]``. POST /v1/models/minilm:predict with
``{"instances": [text, ...]}`` answers ``{"predictions": [[float, ...], ...]}`` (sentence embeddings),
the same request and answer as modelbay's V1 route. onnxruntime's own defaults but the thread count.
"""

import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import Body, FastAPI
from tokenizers import Tokenizer

model, tokenizer_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
threads = int(sys.argv[4]) if len(sys.argv) > 4 else 2

options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}
tokenizer = Tokenizer.from_file(tokenizer_path)
tokenizer.enable_truncation(256)
tokenizer.enable_padding()  # to the longest of the batch
app = FastAPI()


@app.post("/v1/models/minilm:predict")
def predict(body: dict = Body(...)) -> dict:
    encodings = tokenizer.encode_batch(body["instances"])
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    (embeddings,) = session.run(["sentence_embedding"], {k: v for k, v in feeds.items() if k in names})
    return {"predictions": embeddings.tolist()}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
