"""OCI images for the build: references, the embedded store, and pulling from registries.

- ``reference``: parse ``[registry/]repository[:tag][@digest]`` (``local/...`` = embedded store).
- ``layout``: the embedded store, an OCI image-layout directory; write images, flatten them.
- ``registry``: pull an image (one architecture) from a registry into a layout.

Nothing is imported here, so using the store does not load the HTTP and TLS modules.
"""
