"""The torch-free bottom layer: contracts that the torch side and the runtime both read.

Nothing here imports torch or the training modules (import-linter enforces it): numpy only,
onnx lazily where a graph is built. ``mind_edge.core.routing`` holds the routing policies and
their constants; ``mind_edge.core.plan`` the network topology.
"""
