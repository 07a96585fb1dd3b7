"""Generation from the Python API called wrongly (`llp_jax.generate`, `generate_stream`): one
line naming the argument for a sampling setting, a seed, a prompt or a stream's block time of
the wrong kind, never a TypeError from a comparison or from jit's argument handling."""

import numpy as np
import pytest

import llp_jax
from llp_jax import models
from llp_jax.errors import InputError, LLPError


@pytest.fixture(scope="module")
def model():
    return llp_jax.build(models.tiny("llp", num_layers=1, d_model=32))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_new": 2.5}, "num_new=2.5 must be an int"),
        ({"num_new": "5"}, "num_new='5' must be an int"),
        ({"top_k": 2.0}, "top_k=2.0 must be an int"),
        ({"stop_id": "x"}, "stop_id='x' must be an int"),
        ({"temperature": "hot"}, "temperature='hot' must be a number"),
        ({"top_p": None}, "top_p=None must be a number"),
        ({"rng": "a"}, "rng='a' must be a PRNG key or an int seed"),
        ({"rng": 1.5}, "rng=1.5"),
        ({"num_new": 2**31}, "num_new=2147483648 must be below 2"),  # a jitted OverflowError
        ({"rng": 2**64}, "rng=18446744073709551616 must be a 64-bit integer"),
    ],
)
@pytest.mark.parametrize("generate", ["generate", "generate_stream"])
def test_generate_arguments_of_the_wrong_kind_are_one_line(model, kwargs, message, generate):
    """Each was a TypeError from a comparison or from jit's argument handling. A stream says so
    when called, not at its first block."""
    args = {"num_new": 2, **kwargs}
    with pytest.raises(LLPError, match=message) as err:
        getattr(llp_jax, generate)(model, [[1, 2]], args.pop("num_new"), **args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("seconds", ["a", float("nan"), -1.0, None])
def test_a_streams_block_time_is_checked(model, seconds):
    """'a' was a TypeError from a division, nan a ValueError at the second block."""
    with pytest.raises(LLPError, match=r"seconds=.* must be a number >= 0") as err:
        llp_jax.generate_stream(model, [[1, 2]], 3, seconds=seconds)
    assert "\n" not in str(err.value)
    blocks = list(llp_jax.generate_stream(model, [[1, 2]], 20, seconds=0))
    assert sum(b.shape[1] for b in blocks) == 20 and len(blocks) > 1  # 0: the shortest blocks


def test_generate_takes_numpy_scalars(model):
    out = llp_jax.generate(model, [[1, 2]], np.int64(3), rng=np.int32(4), temperature=np.float32(0))
    assert out.shape == (1, 5)
    np.testing.assert_array_equal(out, llp_jax.generate(model, [[1, 2]], 3, rng=4, temperature=0))


@pytest.mark.parametrize(
    "prompt, message",
    [
        (np.full((1, 3), 999), "token id 999 in prompt"),
        (np.array([[-1, 2]]), "token id -1 in prompt"),
        (np.ones((1, 3), np.float32), "integer token ids"),
        (np.ones(3, np.int32), "add the batch axis"),
        ("It is a truth", "prompt is text; pass its token ids: \\[tokenizer.encode\\(text\\)\\]"),
        (["It is", "It was"], "prompt is text"),
        (
            [[1, 2, 3], [4]],
            "prompt must be int \\[batch, length\\]: its rows differ in length "
            "\\(3, 1\\).*give each length its own call$",
        ),
        ([np.ones(2, np.int32), np.ones(5, np.int32)], "rows differ in length \\(2, 5\\)"),
    ],
)
def test_generate_rejects_bad_prompts(model, prompt, message):
    with pytest.raises(InputError, match=message):
        llp_jax.generate(model, prompt, 2)
