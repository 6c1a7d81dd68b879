"""course_lib._validate: the shared argument checks, against PyTorch where PyTorch has the same rule."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib import _validate as v

# sizes 0, 1 and a few others, so that equal, broadcastable (1) and clashing sizes all occur often
SHAPES = st.lists(st.lists(st.sampled_from([0, 1, 2, 3, 5]), max_size=4), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(SHAPES)
def test_broadcast_shapes_is_torchs_rule(shapes):
    try:
        expected = torch.broadcast_shapes(*shapes)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="do not broadcast"):
            v.broadcast_shapes(*shapes)
    else:
        got = v.broadcast_shapes(*shapes)
        assert type(got) is torch.Size and got == expected


def test_broadcast_shapes_accepts_torch_sizes_and_names_the_clash():
    assert v.broadcast_shapes(torch.Size([4, 1, 3]), (2, 1)) == torch.Size([4, 2, 3])
    assert v.broadcast_shapes(torch.Size([])) == torch.Size([])
    with pytest.raises(RuntimeError, match=r"sizes 4 and 2 at dim -2"):
        v.broadcast_shapes((4, 3), (2, 3))


def test_broadcast_batch_names_both_arguments_and_their_shapes():
    with pytest.raises(ValueError, match=r"query \(2, 5, 4\) and key \(3, 5, 4\) do not broadcast"):
        v.broadcast_batch(torch.zeros(2, 5, 4), torch.zeros(3, 5, 4), ("query", "key"), "attention")
    v.broadcast_batch(torch.zeros(2, 1, 5, 4), torch.zeros(3, 7, 4), ("query", "key"), "attention")  # (2, 1) with (3,)
