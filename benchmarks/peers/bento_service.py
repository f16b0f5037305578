"""BentoML's way to serve the same graph: one ``@bentoml.service`` with one API, one worker.

Run by ``run.py`` as ``bentoml serve bento_service:Embedder`` from the BentoML venv, with
``PEERS_MODEL``/``PEERS_TOKENIZER``/``PEERS_THREADS`` in the environment. POST /predict with
``{"instances": [text, ...]}`` answers the embeddings as a JSON list of lists, as the floor does.
"""

import os

import bentoml
import numpy as np


@bentoml.service(workers=1, traffic={"timeout": 120})
class Embedder:
    def __init__(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEERS_THREADS", "2"))
        self.session = ort.InferenceSession(os.environ["PEERS_MODEL"], options, providers=["CPUExecutionProvider"])
        self.names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(os.environ["PEERS_TOKENIZER"])
        self.tokenizer.enable_truncation(256)
        self.tokenizer.enable_padding()

    @bentoml.api
    def predict(self, instances: list[str]) -> list[list[float]]:
        encodings = self.tokenizer.encode_batch(instances)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (embeddings,) = self.session.run(["sentence_embedding"], {k: v for k, v in feeds.items() if k in self.names})
        return embeddings.tolist()
