"""Outputs: what leaves quicknets for people and other programs. report.py: a run's or a
sweep's self-contained HTML page; demo.py: the Gradio page of `quicknets demo`; exporting.py:
ONNX, TorchScript and safetensors files, checked before writing, and load_exported.

May import: every group but audit and commands.
"""
