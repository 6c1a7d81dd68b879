"""Grading settings, in one place next to the checks: points per exercise, and ready-made functions.

``POINTS`` gives each exercise's points in batch grading (``course-grade``); an exercise not
listed is worth ``DEFAULT_POINTS``. Partial credit is proportional: an exercise with 5
properties, 4 of them passed, earns 4/5 of its points.

``FORBIDDEN`` lists, for the exercises that ask for a hand-written version, the ready-made
functions that must not be used (qualified names, as imported: ``torch.nn.functional.softmax``,
not ``F.softmax``). ``torch.Tensor.<method>`` also matches the method call ``x.<method>(...)``,
and ``"@"`` the matrix-multiplication operator. Besides this list, an exercise may never use
course_lib's own function of the same name (its reference: ``course_lib.softmax`` for
``softmax``, ``course_lib.positional.apply_rope`` for ``apply_rope``), however it is reached
(``softmax = course_lib.softmax``, ``from course_lib.efficient import online_softmax``); that rule
needs no entry, so it covers new chapters too. Where the course has the same function under
another name (``online_softmax`` is a softmax, ``flash_attention`` is attention), the lists name it. The first name of an entry is the one shown to the learner.

Both are keyed by exercise name, which is the name of the learner's function (and of its check,
``check_<name>``). Taught in: every exercises/ notebook.
"""

from __future__ import annotations

DEFAULT_POINTS = 1.0

POINTS: dict[str, float] = {
    # 01 dot products
    "dot": 1,
    "cosine_similarity": 1,
    "dot_product_scores": 1,
    "predict_cosine": 1,
    "find_flip_scale": 1,
    # 02 softmax
    "softmax": 2,
    "softmax_with_temperature": 1,
    "soft_lookup": 1,
    "predict_shifted_softmax": 1,
    "find_temperature": 1,
    # 03 scaling
    "scaled_scores": 1,
    "attention": 2,
    "softmax_jacobian": 1,
    "predict_score_std": 1,
    "find_saturating_dk": 2,
    # 04 masking
    "masked_attention": 2,
    "predict_causal_row_nonzeros": 1,
    "find_leaking_positions": 2,
    # 05 multi-head attention
    "multi_head_attention": 2,
    "predict_mha_parameters": 1,
    "find_previous_token_head": 1,
    # 06 cross-attention
    "cross_attention": 2,
    "predict_cross_weights_shape": 1,
    "find_reordered_words": 1,
    # 07 positional encoding
    "apply_rope": 2,
    "predict_rope_depends_on": 1,
    "find_similarity_halving_offset": 1,
    # 08 a tiny transformer
    "decoder_layer_forward": 2,
    "greedy_decode": 2,
    "predict_untrained_loss": 1,
    "find_alignment_head": 1,  # the chapter's investigation
    # 09 efficient attention
    "tiled_attention": 2,
    "predict_score_matrix_mib": 1,
    "find_memory_exponent": 2,
    # 10 a real pretrained model
    "bert_self_attention": 2,
    "predict_num_attention_maps": 1,
    "find_most_important_head": 2,
    # 11 a small GPT
    "lm_loss": 1,
    "sampling_probs": 2,
    "gqa_decode_step": 2,
    "predict_initial_loss": 1,
}

_SOFTMAX = (
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.special.softmax",
    "torch.Tensor.softmax",
    "torch.nn.Softmax",
    "torch.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch.Tensor.log_softmax",
    "torch.nn.LogSoftmax",
    "scipy.special.softmax",
    "course_lib.attention.softmax",
    "course_lib.efficient.online_softmax",  # the course's other softmax: ready-made too
)
_SDPA = (
    "torch.nn.functional.scaled_dot_product_attention",
    "course_lib.scaled_dot_product_attention",
    "course_lib.attention.scaled_dot_product_attention",
    "torch.nn.MultiheadAttention",
    "torch.nn.functional.multi_head_attention_forward",
    "course_lib.efficient.flash_attention",  # the course's exact attention, computed in blocks
    "course_lib.efficient.tiled_attention",
)

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "dot": ("torch.dot", "torch.inner", "torch.vdot", "torch.matmul", "torch.mm", "torch.Tensor.dot",
            "torch.Tensor.matmul", "torch.Tensor.inner", "@"),
    "cosine_similarity": ("torch.nn.functional.cosine_similarity", "torch.cosine_similarity",
                          "torch.nn.CosineSimilarity"),
    "softmax": _SOFTMAX,
    "attention": _SDPA + ("torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax",
                          "torch.Tensor.softmax", "torch.nn.Softmax"),
    "masked_attention": _SDPA,
    "cross_attention": _SDPA,
    "multi_head_attention": ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
                             "course_lib.multihead.MultiHeadAttention", "course_lib.MultiHeadAttention"),
    "make_causal_mask": ("course_lib.masking.causal_mask", "course_lib.causal_mask",
                         "torch.nn.Transformer.generate_square_subsequent_mask"),
    "make_padding_mask": ("course_lib.masking.padding_mask", "course_lib.padding_mask"),
    "combine": ("course_lib.masking.combine_masks", "course_lib.combine_masks"),
    "encoder_decoder_masks": ("course_lib.masking.causal_mask", "course_lib.causal_mask",
                              "course_lib.masking.padding_mask", "course_lib.padding_mask"),
    "sinusoidal_encoding": ("course_lib.positional.sinusoidal_encoding",),
    "decoder_layer_forward": ("torch.nn.TransformerDecoderLayer", "course_lib.transformer.DecoderLayer",
                              "course_lib.DecoderLayer"),
    "teacher_forcing_loss": ("course_lib.transformer.shift_right",),
    "find_alignment_head": ("course_lib.transformer.alignment_weight",),
    "online_softmax": _SOFTMAX + ("torch.logsumexp", "torch.special.logsumexp", "torch.Tensor.logsumexp"),
    "tiled_attention": _SDPA,
    "kv_cache_step": ("course_lib.efficient.decode_step", "course_lib.efficient.KVCache"),
    "bert_self_attention": ("torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward",
                            "course_lib.multihead.MultiHeadAttention", "course_lib.MultiHeadAttention",
                            "course_lib.pretrained.EncoderLayer", "course_lib.pretrained.BertEncoder"),
    "mean_pool": ("sentence_transformers.models.Pooling",),
    "apply_rope": ("course_lib.positional.apply_rope",),
    "lm_loss": ("course_lib.gpt.lm_loss",),
    "sampling_probs": ("course_lib.gpt.sampling_probs", "course_lib.gpt.sample_next"),
    "gqa_decode_step": _SDPA + ("course_lib.efficient.decode_step", "course_lib.efficient.KVCache",
                        "course_lib.gpt.grouped_query_attention", "course_lib.gpt.CausalSelfAttention"),
}


def points_for(exercise: str) -> float:
    """The points an exercise is worth in batch grading (``DEFAULT_POINTS`` when not listed)."""
    return float(POINTS.get(exercise, DEFAULT_POINTS))
