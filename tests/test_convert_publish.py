"""publish(): the prepared version (and its fp32 twin) handed to a registry or a client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from modelbay.convert.data import Dataset  # noqa: E402
from modelbay.convert.pipeline import prepare, publish  # noqa: E402
from modelbay.errors import BadRequest  # noqa: E402


@dataclass
class Registered:
    version: int
    name: str
    path: Path
    metadata: object
    side_files: dict
    aliases: list


class RecordingRegistry:
    """Stands in for modelbay.registry.Registry: same register_version signature."""

    def __init__(self):
        self.calls: list[Registered] = []

    def register_version(self, name, model_path, metadata, side_files={}, aliases=[]):  # noqa: B006
        r = Registered(len(self.calls) + 1, name, Path(model_path), metadata, dict(side_files), list(aliases))
        self.calls.append(r)
        return r


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    work = tmp_path_factory.mktemp("pub")
    (work / "vocab.txt").write_text("a\nb\n")
    return prepare(
        model,
        name="tiny",
        workdir=work,
        input_spec="x:float32:[batch,16]",
        quantize_mode="dynamic",
        eval_data=Dataset([{"x": x}]),
        side_files={"vocab.txt": work / "vocab.txt"},
        measure=False,
    )


def test_publish_with_fp32_twin_links_the_versions(prepared):
    reg = RecordingRegistry()
    twin, main = publish(prepared, registry=reg, aliases=["production"], with_fp32_twin=True)
    assert [c.path.name for c in reg.calls] == ["model.fp32.onnx", "model.int8.onnx"]
    assert twin.aliases == [] and main.aliases == ["production"]
    assert main.metadata.quantization.fp32_version == twin.version == 1
    assert twin.metadata.quantization.method == "none"
    assert main.side_files == twin.side_files == {"vocab.txt": prepared.side_files["vocab.txt"]}
    assert prepared.metadata.quantization.fp32_version is None  # the prepared result is not mutated


def test_publish_through_a_client(prepared):
    pushed = []

    class Client:
        def push(self, path, name, metadata, side_files, aliases, progress):
            pushed.append((Path(path).name, name, aliases))
            return metadata

    publish(prepared, client=Client(), aliases=["staging"])
    assert pushed == [("model.int8.onnx", "tiny", ["staging"])]
    with pytest.raises(BadRequest):
        publish(prepared)
