"""svseg: MONAI-based segmentation with five attention networks."""

__version__ = "0.1.0"
