"""Networks: architectures from compact specs (models.py: network(spec), MLP, CNN and ResNet
builders, NETWORKS by name, summary, saving and loading weights with their preprocessing).

May import: base, data, config.
"""
