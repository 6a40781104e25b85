"""The on-disk layouts of the data sets, one module each with its reader and its writer, used by
synthesis (smae synth), propagation and evaluation alike:

images       image and label-PNG reading, palettes, list files (shared by every layout)
davis        DAVIS-2017
jhmdb        JHMDB as ajabri/videowalk reads it
vip          VIP_Fine as videowalk reads it
youtube_vos  YouTube-VOS (also MOSE, LVOS): objects that enter later, sparse first masks
mp4          H.264 mp4 writing (pre-training videos, overlay videos)
"""
