"""Environment set-up for semseg_heads: NOT library code, never imported by ``semseg_heads``.

Standard library only (it runs before anything is installed). Run its modules from the
repository root as ``python -m bootstrap.setup_env`` / ``python -m bootstrap.install_detectron2``;
``make setup`` does that. ``detectron2_C.py`` is the source of the ``detectron2._C`` stand-in
installed into Detectron2 v0.6 (``semseg_heads.compat`` is the library side that detects it).
"""
