"""The one shared table of benchmark shapes (bench files import from here)."""

# DAVIS-2017 label propagation at 480x880 (CropMAE's resolution), paper protocol: 20 context
# frames plus the first one (searched everywhere), top-7, radius 20 feature cells, CropMAE's
# temperature 0.7, ViT-S features (C = 384), K = 8 soft label channels (background + objects).
_DAVIS_PROPAGATION = dict(frames=21, channels=384, classes=8, topk=7, temperature=0.7, radius=20,
                          window="circle", global_frames=1)
PROPAGATION_SHAPES = {
    "davis-vits16": dict(grid=(30, 55), **_DAVIS_PROPAGATION),  # patch 16
    "davis-vits8": dict(grid=(60, 110), **_DAVIS_PROPAGATION),  # patch 8
}

# SiamMAE pre-training at 224x224, the future frame 95% masked (MAE's int(L * 0.05) kept):
# `tokens` L and `visible` K per frame, the encoder width for the gathers, the decoder width
# (dec256d4b) for the scatter, `preset` the model of the end-to-end training step.
_VITS16 = dict(img_size=224, patch=16, tokens=196, visible=9, encoder_dim=384, decoder_dim=256, preset="vits16")
_VITS8 = dict(img_size=224, patch=8, tokens=784, visible=39, encoder_dim=384, decoder_dim=256, preset="vits8")
TRAINING_SHAPES = {
    "vits16-b64": dict(batch=64, **_VITS16),
    "vits16-b256": dict(batch=256, **_VITS16),
    "vits8-b64": dict(batch=64, **_VITS8),
    "vits8-b256": dict(batch=256, **_VITS8),
}
