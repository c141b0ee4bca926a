"""Secure boot assets from a factory started with keys: a signed UKI, its PXE script, and
a secure boot ISO that boots under enforced keys with the schematic's extension."""

from __future__ import annotations

import json
import subprocess

import pytest
from factory_server import serve_factory
from project import FIXED
from qemu import banner, enrolled_vars, secure_iso
from realgraph import clone

from buildgraph import secureboot

pytestmark = pytest.mark.slow
VERSION = FIXED["TAG"]
ARGS = ["buildgraph.poweroff=1", "panic=1"]


def test_a_factory_with_keys_serves_signed_assets_that_boot_enforced(tmp_path) -> None:
    keys = tmp_path / "keys"
    secureboot.generate(keys)
    root, cache = clone(tmp_path / "repo"), tmp_path / "cache"
    with serve_factory(root, cache, "--secureboot-keys", str(keys)) as factory:
        body = (
            f"customization: {{extraKernelArgs: [{', '.join(ARGS)}],"
            " systemExtensions: {officialExtensions: [buildgraph/ext-hello]}}"
        ).encode()
        answer = factory.request("POST", "/schematics", body)
        assert answer.status == 201, answer.text
        schematic_id = json.loads(answer.body)["id"]
        prefix = f"/image/{schematic_id}/{VERSION}"

        uki = factory.request("GET", f"{prefix}/metal-amd64-secureboot-uki.efi")
        assert uki.status == 200, uki.text
        (tmp_path / "uki.efi").write_bytes(uki.body)
        verified = subprocess.run(
            ["sbverify", "--cert", str(keys / secureboot.SIGNING_CERT), str(tmp_path / "uki.efi")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout + verified.stderr

        script = factory.request("GET", f"/pxe/{schematic_id}/{VERSION}/metal-amd64-secureboot")
        lines = script.text.splitlines()
        assert lines[3].startswith(f"kernel {factory.url}{prefix}/metal-amd64-secureboot-uki.efi ")
        assert lines[4:] == ["boot"]  # the UKI holds its initramfs: no initrd line

        iso = factory.request("GET", f"{prefix}/metal-amd64-secureboot.iso")
        assert iso.status == 200, iso.text
        (tmp_path / "secure.iso").write_bytes(iso.body)
        variables = enrolled_vars(keys, "amd64", tmp_path / "enrolled.fd")
        fields = banner(secure_iso(tmp_path / "secure.iso", "amd64", variables, tmp_path))
        assert fields["secureboot"] == "1", fields
        assert fields["extensions"] == f"hello@1.0.0,schematic@{schematic_id}"
