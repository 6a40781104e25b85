"""Per-sample random masking and the gather / scatter references."""
import pytest
import torch

import smae.kernels as K
from float64_specs import loop_gather, loop_scatter
from smae.models.masking import num_visible, random_masking


@pytest.mark.parametrize("length,ratio,keep", [(196, 0.95, 9), (784, 0.95, 39), (64, 0.75, 16), (10, 0.99, 1)])
def test_keep_count_is_mae_int_rule(length, ratio, keep):
    assert num_visible(length, ratio) == keep
    masking = random_masking(4, length, ratio, generator=torch.Generator().manual_seed(0))
    assert masking.ids_keep.shape == (4, keep)
    assert (masking.mask.sum(1) == length - keep).all()
    # The kept positions are exactly the unmasked ones.
    visible = torch.zeros(4, length).scatter_(1, masking.ids_keep, 1.0)
    torch.testing.assert_close(visible, 1 - masking.mask)


def test_each_sample_gets_its_own_mask():
    masking = random_masking(8, 196, 0.95, generator=torch.Generator().manual_seed(1))
    assert len({tuple(row.tolist()) for row in masking.mask}) == 8


def test_restore_inverts_the_shuffle():
    masking = random_masking(3, 50, 0.5, generator=torch.Generator().manual_seed(2))
    tokens = torch.randn(3, 50, 4)
    kept = torch.stack([tokens[b, masking.ids_keep[b]] for b in range(3)])
    rest = torch.randn(3, 50 - kept.shape[1], 4)
    shuffled = torch.cat([kept, rest], dim=1)
    restored = torch.gather(shuffled, 1, masking.ids_restore[..., None].expand(-1, -1, 4))
    keep_mask = masking.mask == 0
    torch.testing.assert_close(restored[keep_mask], tokens[keep_mask])


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError, match="mask_ratio"):
        num_visible(196, 1.0)


def test_gather_reference_matches_loops():
    generator = torch.Generator().manual_seed(3)
    masking = random_masking(2, 20, 0.75, generator=generator)
    tokens, pos = torch.randn(2, 20, 6, generator=generator), torch.randn(20, 6, generator=generator)
    torch.testing.assert_close(K.gather_visible_reference(tokens, masking.ids_keep, pos).double(), loop_gather(tokens, masking.ids_keep, pos))
    assert K.gather_visible(tokens, masking.ids_keep).shape == (2, 5, 6)


@pytest.mark.parametrize("prefix", [0, 1])
def test_scatter_reference_matches_loops(prefix):
    generator = torch.Generator().manual_seed(4)
    masking = random_masking(2, 20, 0.75, generator=generator)
    visible = torch.randn(2, prefix + 5, 6, generator=generator)
    mask_token, pos = torch.randn(6, generator=generator), torch.randn(prefix + 20, 6, generator=generator)
    got = K.scatter_visible(visible, masking.ids_restore, mask_token, pos, num_prefix=prefix)
    torch.testing.assert_close(got.double(), loop_scatter(visible, masking.ids_restore, mask_token, pos, prefix))


def test_masking_ops_name_bad_arguments():
    with pytest.raises(ValueError, match="int64"):
        K.gather_visible(torch.randn(1, 4, 2), torch.zeros(1, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="pos_embed"):
        K.scatter_visible(torch.randn(1, 2, 3), torch.arange(4)[None], torch.randn(3), torch.randn(5, 3))
