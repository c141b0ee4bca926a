"""Disk images of any origin, read (and, later, edited) as plain files.

A built image is customized or checked after the fact; the usual way is a loop device
and a mount, which needs root, or libguestfs, which needs a VM. This package needs
neither: ``source`` turns any input (qcow2, vmdk, vhd, compressed) into a raw file,
``gpt`` reads its partition table, ``filesystems`` says what each partition holds and
reads FAT (``fat``, through mtools) and ext2/3/4 (``ext``, through debugfs) at their
offsets in the image, read-only. ``layouts`` maps partition labels to where an OS mounts
them; ``rules`` and ``lint`` are ``buildgraph lint-image`` (``command``). They live here,
not in a top-level ``lint`` package, because they read nothing but disk images through
this package, and "lint" already means ruff in this repository.
"""
