"""The Chair Segments study as a package: ``plan`` (settings, data, configs, budget),
``worker`` (one model per process: train, evaluate, measure) and ``report`` (table and
qualitative grid). ``projects/ChairSegments/run_study.py`` is its command line."""
