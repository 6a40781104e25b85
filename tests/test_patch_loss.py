"""masked_patch_loss (reference path) against MAE's definition written independently in float64."""
import pytest
import torch

from float64_specs import mae_loss_float64

import smae.kernels as K


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 16, 24, 4), (1, 3, 32, 32, 16)])
def test_value_and_gradient_match_float64_definition(shape, norm_pix):
    batch, channels, height, width, patch = shape
    generator = torch.Generator().manual_seed(0)
    length, dim = (height // patch) * (width // patch), patch * patch * channels
    imgs = torch.randn(batch, channels, height, width, generator=generator)
    pred = torch.randn(batch, length, dim, generator=generator, requires_grad=True)
    mask = (torch.rand(batch, length, generator=generator) < 0.7).float()
    mask[0, 0] = 1.0
    loss = K.masked_patch_loss(pred, imgs, mask, patch_size=patch, norm_pix=norm_pix)
    want = mae_loss_float64(pred, imgs, mask, patch, norm_pix)
    torch.testing.assert_close(loss.double(), want, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(loss, pred)
    pred64 = pred.detach().double().requires_grad_()
    (want_grad,) = torch.autograd.grad(mae_loss_float64(pred64, imgs, mask, patch, norm_pix), pred64)
    torch.testing.assert_close(grad.double(), want_grad, atol=1e-7, rtol=1e-5)


def test_patchify_round_trip_and_order():
    imgs = torch.randn(2, 3, 8, 12)
    patches = K.patchify(imgs, 4)
    assert patches.shape == (2, 6, 48)
    # Patch (0, 1), pixel (p=1, q=2), channel 2 sits at index (1 * 4 + 2) * 3 + 2.
    assert patches[0, 1, (1 * 4 + 2) * 3 + 2] == imgs[0, 2, 1, 4 + 2]
    torch.testing.assert_close(K.unpatchify(patches, 4, (2, 3)), imgs)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="pred must be"):
        K.masked_patch_loss(torch.randn(1, 4, 10), torch.randn(1, 3, 4, 4), torch.ones(1, 4), patch_size=2)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        K.masked_patch_loss(torch.randn(1, 4, 12), torch.randn(1, 3, 5, 4), torch.ones(1, 4), patch_size=2)
