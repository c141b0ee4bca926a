"""The external tools the OS side's steps run, and the Debian package of each: what a
missing tool's message says to install. Keep it in step with setup.sh.
"""

PACKAGES: dict[str, str] = {
    "sh": "dash",
    "cpio": "cpio",
    "dd": "coreutils",
    "debugfs": "e2fsprogs",
    "dpkg-deb": "dpkg",
    "faketime": "faketime",
    "go": "golang-go",
    "grub-mkimage": "grub-common",
    "gzip": "gzip",
    "mcopy": "mtools",
    "mdir": "mtools",
    "mke2fs": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mksquashfs": "squashfs-tools",
    "mmd": "mtools",
    "qemu-img": "qemu-utils",
    "sbsign": "sbsigntool",
    "sbverify": "sbsigntool",
    "sgdisk": "gdisk",
    "skopeo": "skopeo",
    "tar": "tar",
    "unsquashfs": "squashfs-tools",
    "xorriso": "xorriso",
    "xz": "xz-utils",
    "zstd": "zstd",
}
