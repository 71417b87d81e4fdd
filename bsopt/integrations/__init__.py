"""Adapters that let other training frameworks report to bsopt.

- :mod:`~bsopt.integrations.lightning`: ``BsoptCallback`` for PyTorch Lightning
  (``pip install 'bsopt[lightning]'``).

They import only bsopt's leaves (:mod:`bsopt.script`) and their framework, which is imported
when the adapter's module is, never by ``import bsopt``.
"""
