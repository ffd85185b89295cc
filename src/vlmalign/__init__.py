"""vlmalign: measure and improve the moral alignment of vision-language models."""

__version__ = "0.1.0"
