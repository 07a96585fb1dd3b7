"""The train state, its sharded initialisation, gradient accumulation, and the jitted train and
eval steps.

The model is split once (`nnx.split`) into a static graphdef and a State of parameters; the steps
are pure functions of that State, `jax.jit`-ed with explicit in/out shardings and the train state
donated, so a step never copies parameters or optimizer moments.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from llp_jax.models import losses
from llp_jax.models.inputs import seed_key
from llp_jax.training import memory_fit, sequence_parallel
from llp_jax.training import mesh as mesh_lib

# {'step': int32[], 'params': nnx.State, 'opt_state': optax state, 'rng': uint32 key data,
#  'bad_steps': int32[] (non-finite steps skipped so far), 'last_bad_step': int32[]}
TrainState = dict
Batch = dict  # {'inputs': int32[B, T], 'targets': int32[B, T]}


def next_token_loss(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch, rng, *,
                    fused: bool = True):  # fmt: skip
    """Mean cross-entropy over the model's loss positions, and (nll sum, token count).

    The model scores its last P positions (all of them, or the latents), so the targets are the
    last P targets of the window. `fused`: the head and the cross-entropy run chunked
    (models/losses.py: the [B, P, V] logits are never held); otherwise the reference, optax on
    the full logits. The two are equal to float rounding (tests/models/test_losses.py).
    """
    model = nnx.merge(graphdef, params)
    T = batch["inputs"].shape[1]
    targets_BxP = batch["targets"][:, model.loss_start(T) :]
    count = targets_BxP.size
    if fused and losses.fused_rows(count):
        nll_sum = model.nll_sum(batch["inputs"], targets_BxP, rng=rng)
    else:
        logits_BxPxV = model(batch["inputs"], rng=rng)
        nll_sum = optax.softmax_cross_entropy_with_integer_labels(logits_BxPxV, targets_BxP).sum()
    return nll_sum / count, {"nll_sum": nll_sum, "tokens": jnp.float32(count)}


LossFn = Callable[[Any, Any, "jax.Array | None"], tuple[jax.Array, Any]]


def accumulate_gradients(
    loss_fn: LossFn,
    params: Any,
    batch: Any,
    rng: jax.Array | None,
    num_micro_batches: int,
) -> tuple[tuple[jax.Array, Any], Any]:
    """Mean loss, aux and gradients over `num_micro_batches` slices of `batch`, via `lax.scan`.

    With a per-token-mean loss and equal-sized micro-batches, the result equals
    `jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)` on the whole batch (without
    dropout), at 1/k of the activation memory. Micro-batch i takes rows i, i+k, i+2k, ... so
    each micro-batch stays spread over all data-parallel devices (the batch is sharded on axis 0).

    Args:
      loss_fn: (params, micro_batch, rng) -> (scalar loss, aux pytree of numeric arrays).
      params: differentiated pytree.
      batch: pytree of [B, ...] arrays; B must be divisible by `num_micro_batches`.
      rng: dropout key (micro-batch i uses `fold_in(rng, i)`) or None.
      num_micro_batches: k >= 1.

    Returns:
      ((loss, aux), grads), as `jax.value_and_grad(..., has_aux=True)` returns them; aux is
      averaged over micro-batches.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = int(num_micro_batches)
    if k <= 1:
        return grad_fn(params, batch, rng)

    def split(x_BxN):
        b = x_BxN.shape[0]
        if b % k:
            raise ValueError(f"batch size {b} is not divisible by {k} micro-batches")
        return jnp.swapaxes(x_BxN.reshape(b // k, k, *x_BxN.shape[1:]), 0, 1)

    micro_KxbxN = jax.tree.map(split, batch)
    first = jax.tree.map(lambda x: x[0], micro_KxbxN)
    loss_shape, aux_shape = jax.eval_shape(loss_fn, params, first, rng)
    # Sums in float32 at least (a bfloat16 loss), or the loss's own wider type (float64 where a
    # caller's loss is float64, as under JAX_ENABLE_X64): the scan's carry keeps one type.
    wide = lambda s: jnp.promote_types(s.dtype, jnp.float32)  # noqa: E731
    zeros = lambda t: jax.tree.map(lambda s: jnp.zeros(s.shape, wide(s)), t)  # noqa: E731
    init = (zeros(loss_shape), zeros(aux_shape), jax.tree.map(jnp.zeros_like, params))

    def body(carry, inputs):
        i, micro = inputs
        micro_rng = None if rng is None else jax.random.fold_in(rng, i)
        (loss, aux), grads = grad_fn(params, micro, micro_rng)
        add = lambda a, b: jax.tree.map(lambda x, y: x + y.astype(x.dtype), a, b)  # noqa: E731
        return (add(carry[0], loss), add(carry[1], aux), add(carry[2], grads)), None

    (loss, aux, grads), _ = jax.lax.scan(body, init, (jnp.arange(k), micro_KxbxN))
    mean = lambda t: jax.tree.map(lambda x: x / k, t)  # noqa: E731
    return (loss / k, mean(aux)), mean(grads)


def init_train_state(
    model_factory: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh: Mesh,
    seed: int, *, batch_tokens: int = 0, memory: tuple[int, str] | None = None,
) -> tuple[nnx.GraphDef, TrainState, Any]:  # fmt: skip
    """Creates parameters and optimizer state directly in their shardings, once their shards
    and a batch of `batch_tokens` ids are known to fit the devices' memory (`memory_fit`).

    Returns:
      (graphdef, state, state_shardings).
    """

    def init() -> TrainState:
        params = nnx.split(model_factory())[1]
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": tx.init(params),
            "rng": jax.random.key_data(seed_key(seed)),
            "bad_steps": jnp.zeros((), jnp.int32),
            "last_bad_step": jnp.full((), -1, jnp.int32),
        }

    with mesh_lib.sharding_context(mesh):
        graphdef = nnx.split(nnx.eval_shape(model_factory))[0]
        abstract = jax.eval_shape(init)
        shardings = mesh_lib.state_shardings(abstract, mesh)
        memory_fit.check_fits(abstract, shardings, mesh, batch_tokens=batch_tokens, memory=memory)
        state = jax.jit(init, out_shardings=shardings)()
    return graphdef, state, shardings


def start_at(state: TrainState, params: nnx.State, step: int) -> TrainState:
    """`state` with these parameters and its step and optimizer counts at `step` (moments stay
    fresh): where a weights-only checkpoint continues, so the learning-rate schedule resumes
    where the run that wrote the weights left it."""

    def at_step(path, leaf):
        name = getattr(path[-1], "name", None) if path else None
        return leaf * 0 + jnp.asarray(step, leaf.dtype) if name == "count" else leaf

    opt_state = jax.tree_util.tree_map_with_path(at_step, state["opt_state"])
    step_array = state["step"] * 0 + jnp.asarray(step, state["step"].dtype)
    return {**state, "params": params, "opt_state": opt_state, "step": step_array}


def _only_trained(grads, trained):
    return jax.tree.map(lambda keep, g: g if keep else optax.MaskedNode(), trained, grads,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))  # fmt: skip


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh: Mesh,
    state_shardings: Any,
    *,
    grad_accum_steps: int = 1,
    dropout: bool = True,
    trained: Any = None,
):
    """A jitted `(state, batch) -> (state, metrics)`; the state is donated.

    `trained`: a bool per parameter (a prefix tree of the params), False where the optimizer
    leaves it frozen; None = all train. The logged gradient norm (and the finiteness check) is
    over the trained ones only, so no output reads a frozen weight's gradient and XLA drops its
    computation (the weight-gradient matmuls of frozen layers) from the backward.
    """

    loss = sequence_parallel.select_loss(mesh, next_token_loss)

    def loss_fn(params, batch, rng):
        return loss(graphdef, params, batch, rng)

    def step_fn(state: TrainState, batch: Batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        (loss, aux), grads = accumulate_gradients(
            loss_fn, state["params"], batch, rng if dropout else None, grad_accum_steps
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        grad_norm = optax.tree.norm(grads if trained is None else _only_trained(grads, trained))
        # A non-finite step is never applied: parameters and moments keep their last good values,
        # and the host decides (at the next log or checkpoint) whether to stop or go on.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        step = state["step"] + 1
        new_state = {
            **state,
            "step": step,
            "params": keep(params, state["params"]),
            "opt_state": keep(opt_state, state["opt_state"]),
            "bad_steps": state["bad_steps"] + (~finite).astype(jnp.int32),
            "last_bad_step": jnp.where(finite, state["last_bad_step"], step),
        }
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "learning_rate": schedule(state["step"]),
        }
        return new_state, metrics

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh)),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def make_eval_step(graphdef: nnx.GraphDef, mesh: Mesh, params_shardings: Any):
    """A jitted `(params, batch) -> {'nll_sum', 'tokens'}` without dropout."""

    loss = sequence_parallel.select_loss(mesh, next_token_loss)

    def eval_fn(params, batch):
        return loss(graphdef, params, batch, None)[1]

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(
        eval_fn,
        in_shardings=(params_shardings, mesh_lib.batch_sharding(mesh)),
        out_shardings=replicated,
    )
