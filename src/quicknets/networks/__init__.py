"""Networks: architectures from compact specs (models.py: network(spec), MLP, CNN and ResNet
builders, summary, saving and loading weights with their preprocessing; specs.py: NETWORKS by
name and an MLP's layer sizes, without torch).

May import: base, data, config.
"""
