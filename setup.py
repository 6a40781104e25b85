"""smae: fast Siamese Masked Autoencoder modules, kernels and label-propagation evaluation.

`kernels/` is installed as the subpackage `smae.kernels` (never as a top-level `kernels`,
a name that belongs to an unrelated PyPI package).
"""
from setuptools import setup

SUBPACKAGES = ["models", "data", "layouts", "train", "eval", "propagation", "commands"]

setup(
    name="smae",
    version="0.1.0",
    description="Siamese Masked Autoencoders: fused Triton kernels, pre-training and label propagation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["smae", "smae.kernels"] + [f"smae.{name}" for name in SUBPACKAGES],
    package_dir={"smae": "smae", "smae.kernels": "kernels"},
    install_requires=[
        "torch>=2.6",  # torch.serialization.safe_globals with (callable, "module.name") entries (smae.models.checkpoint_file)
        "einops>=0.7",
        "numpy>=1.24",
        "pillow>=10.0",  # indexed palette PNGs (DAVIS / VIP annotations)
        "av>=12.0",  # PyAV: H.264 decode with seeking, mp4 writing
        "tqdm>=4.66",
        "scipy>=1.10",  # JHMDB's MATLAB joint files (scipy.io.loadmat / savemat)
        # cv2.resize: the exact nearest / bilinear rules CRW, CropMAE and DINO resize with
        # (uint8 fixed-point bilinear, double-precision nearest); headless: no GUI libraries.
        "opencv-python-headless>=4.5",
        # The demo's loss curve and bench/learning_curve.py's plot: the standard plotting library
        # (axes, ticks and legends by hand in Pillow would be a small plotting library of our own).
        "matplotlib>=3.7",
    ],
    extras_require={
        # Triton ships inside CUDA builds of torch; CPU users add it to run kernels in the
        # interpreter (TRITON_INTERPRET=1). 3.6 and 3.9 pass the suite and the sm_90 budget (NumPy
        # 2.4); 3.4 passes the interpreter tests but its sm_90 build of the re-score kernel spills.
        "triton": ["triton>=3.6"],
        # xformers pins an exact torch (CUDA) build, so it is opt-in.
        "xformers": ["xformers"],
        # pytest-benchmark 5.3.1 is the first that runs under pytest 9.2 (earlier ones raise
        # AttributeError on every benchmark: they read the removed `node._nodeid`), and since 5.3.0
        # `--benchmark-json` writes its file only when a benchmark ran. The floor upgrades a
        # machine that keeps an older one (pip upgrades only what a requirement excludes).
        "test": ["triton>=3.6", "pytest>=8.1", "pytest-benchmark>=5.3.1"],
    },
    entry_points={"console_scripts": ["smae=smae.cli:main"]},
)
