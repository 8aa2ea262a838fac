"""Config: what a run is, before anything runs. The typed configs, one per concern, and RunConfig
that holds them (configs.py: one flag per field, TOML, keywords), and the presets, named training
recipes that fill in settings (presets.py).

May import: base, data (the built-in dataset names, the default normalisation). Nothing here
imports torch: the command line builds its flags from these.
"""
