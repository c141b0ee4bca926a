"""buildgraph: a declarative, content-addressed build graph for immutable-OS boot assets."""

__version__ = "0.1.0"
