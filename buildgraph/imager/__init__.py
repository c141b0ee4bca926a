"""The imager front end: Talos' imager over this graph, without a container.

``flags`` is the one table of customization flags (for ``buildgraph imager`` and for
``IMAGER_ARGS``), ``profile`` the imager profile YAML, ``command`` the command itself.
"""
