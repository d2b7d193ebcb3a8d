"""The vllm reasoner's pure parts: the install hint without vLLM, and the engine, sampling and chat arguments.

vLLM itself (a CUDA build pinning other torch/transformers versions) cannot be installed beside the CPU stack the
tests run on, so the engine call is not exercised here; everything handed to it is.
"""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from prompts import load_prompt
from reasoner.imageio import from_array
from reasoner.registry import load_reasoner, resolve
from reasoner.vllm_backend import (
    DEFAULT_LIMIT_MM,
    VLLMReasoner,
    conversations,
    engine_args,
    invalid_reply_error,
    sampling_args,
)
from reasoner.vlm_output import CompletionError, completion_json, completion_schema, from_record
from reasoner.vlm_request import make_provenance, record_from_reply, structured_outputs_fields

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
#: Fields of vllm.sampling_params.StructuredOutputsParams (vLLM 0.12 to 0.33), which takes only these.
STRUCTURED_OUTPUTS_FIELDS = {
    "json", "regex", "choice", "grammar", "json_object", "disable_any_whitespace", "disable_additional_properties",
    "whitespace_pattern", "structural_tag",
}  # fmt: skip


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed")
@pytest.mark.parametrize("make", [lambda: VLLMReasoner("some/model"), lambda: load_reasoner("vllm", model="m")])
def test_without_vllm_the_constructor_says_how_to_install(make):
    with pytest.raises(ImportError, match=r"install with: pip install 'reason-restore\[vllm\]'") as err:
        make()
    assert "\n" not in str(err.value)


def test_registry_resolves_without_importing_model_libraries():
    assert resolve("vllm") is VLLMReasoner
    # Importing the backend modules (as the registry does) pulls in neither vLLM nor torch.
    code = (
        "import sys, reasoner, reasoner.vllm_backend, reasoner.openai_client; "
        "print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_engine_args_defaults_and_pass_through():
    args = engine_args("/models/qwen3-vl", enforce_eager=True)
    assert args == {
        "model": "/models/qwen3-vl",
        "tensor_parallel_size": 1,
        "dtype": "auto",
        "gpu_memory_utilization": 0.9,
        "limit_mm_per_prompt": {"image": 1, "video": 0},  # one image, no video memory reserved
        "seed": 0,
        "enforce_eager": True,
    }  # max_model_len left to the model's own
    assert engine_args("m", max_model_len=8192, tensor_parallel_size=2)["max_model_len"] == 8192
    limit = engine_args("m", limit_mm_per_prompt={"image": 3})["limit_mm_per_prompt"]
    assert limit == {"image": 3} and DEFAULT_LIMIT_MM == {"image": 1, "video": 0}  # the default is not shared


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpu_memory_utilization": 1.5}, r"gpu_memory_utilization=1.5 must be in \(0, 1\]"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size=0 must be at least 1"),
    ],
)
def test_engine_args_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine_args("m", **kwargs)


def test_sampling_args_and_structured_outputs():
    assert sampling_args(256, 0.0, 7) == {"max_tokens": 256, "temperature": 0.0, "seed": 7}
    with pytest.raises(ValueError, match="max_tokens=0"):
        sampling_args(0)
    fields = structured_outputs_fields()
    assert fields["json"] == completion_schema()
    assert fields["disable_any_whitespace"] is True  # a weak model may otherwise write whitespace forever
    assert set(fields) <= STRUCTURED_OUTPUTS_FIELDS


def test_conversations_one_chat_per_image():
    images = [from_array(np.zeros((24, 32, 3), np.float32)), from_array(np.ones((40, 20, 3), np.float32))]
    chats = conversations(images, load_prompt("diagnose"), image_format="jpeg", max_image_side=16)
    assert len(chats) == 2
    for chat, image in zip(chats, images, strict=True):
        assert [m["role"] for m in chat] == ["system", "user"]
        part, text = chat[1]["content"]
        assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert f"{image.width}x{image.height} pixels" in text["text"]


def test_replies_become_records_or_one_line_errors():
    image = from_array(np.full((16, 16, 3), 0.5, np.float32))
    prov = make_provenance("vllm", "m", 0.1, {"batch_size": 2, "max_image_side": None})
    assert "max_image_side" not in prov.settings  # unset settings are left out
    from reasoner.measure import MeasureReasoner

    target = completion_json(from_record(MeasureReasoner().diagnose(image)))
    record = record_from_reply("<think>flat grey</think>" + target, image, prov)
    assert record.thinking == "flat grey" and record.provenance.backend == "vllm"
    with pytest.raises(CompletionError) as err:
        record_from_reply(target[:40], image, prov)
    cut = invalid_reply_error("a.png", "m", err.value, "length", 1024)
    assert str(cut).startswith("a.png: the reply of 'm' is not a valid completion (")
    assert str(cut).endswith("cut at max_tokens=1024; raise max_tokens")
    assert "structured outputs" in str(invalid_reply_error("a.png", "m", err.value, "stop", 1024))
