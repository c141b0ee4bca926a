"""The imager front end: Talos' imager over this graph, without a container.

``customizations`` is the one table of customizations (variables, flags, profile
fields), ``flags`` its flags (for ``buildgraph imager`` and for ``IMAGER_ARGS``),
``profile`` the imager profile YAML, ``command`` the command itself.
"""
