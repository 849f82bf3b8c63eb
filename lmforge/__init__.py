"""lmforge: raw web pages in, a base language model you can sample from out."""

__version__ = "0.1.0"
