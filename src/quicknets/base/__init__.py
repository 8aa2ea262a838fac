"""Base: what every other group stands on. Errors users can cause (errors.py: QuicknetsError,
Interrupted), atomic writes and the cache folder (storage.py), Ctrl-C handled whole
(interrupts.py), and machine facts: cores, device, bf16, memory, the core lease, resolve()
(machine.py).

May import: nothing of quicknets. The layer order, bottom first, is checked by
tests/test_layers.py: base -> data -> config -> networks -> evaluation -> plots -> training ->
records -> sweeps -> outputs -> audit -> commands.
"""
