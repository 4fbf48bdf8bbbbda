"""ActiveDataFlow engine: source -> transform -> sink, with no Kubernetes in it."""

__version__ = "0.1.0"
