"""What a decoder block's extraction found (``BlockSpec``) and the modes it extracts, without PyTorch
(``frontend.block`` extracts): a compile whose frontend is cached reads only these (issue 21: ``import torch``
costs seconds of CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("prefill", "decode")


@dataclass
class BlockSpec:
    """What was extracted: names and shapes of the block's inputs and outputs."""

    model_name: str
    mode: str
    layer_index: int
    layer_class: str
    input_names: list[str]
    output_names: list[str]
    weight_names: list[str]  # the subset of inputs that are weights, in input order
    hidden_size: int
    num_kv_heads: int
    head_dim: int  # of the keys
    value_head_dim: int  # of the values (differs from head_dim with multi-head latent attention)
    seq_len: int  # tokens per invocation (1 in decode)
    max_len: int  # KV-cache capacity (decode) or prompt length (prefill)
    config: dict[str, object] = field(default_factory=dict)
    scalar_names: list[str] = field(default_factory=list)  # inputs passed as scalar registers
    # (output name, cache input name, row input name, row dim): the output is the cache with one row rewritten
    cache_updates: list[tuple[str, str, str, int]] = field(default_factory=list)
    # activations [1, tokens, ...] the model computes per token outside the layers (after the hidden state, and
    # in decode after the caches): a runner must compute them as it computes the embeddings
    token_inputs: list[str] = field(default_factory=list)
