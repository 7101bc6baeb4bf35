"""il2rd: GPU-accelerated reaction-diffusion of interleukin 2 in lymph-node tissue."""

__version__ = "0.1.0"
