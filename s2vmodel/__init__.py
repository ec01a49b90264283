"""s2vmodel: train and use the image + sound -> video model of Tsuchiya et al. (CVPR-W 2019)."""

__version__ = "0.1.0"
