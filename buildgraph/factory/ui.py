"""The factory's web UI: a wizard that ends on a schematic's ID and its links.

Plain server-rendered HTML: ``GET /`` is the form (version, platform or board, arch, secure
boot, extensions with a search box, kernel arguments, META), ``POST /ui/schematic`` makes
the schematic from it exactly as ``POST /schematics`` would (the same parse, the same
checks, the same store) and renders the result: the ID, the canonical YAML, the asset
links, the PXE URL and the installer reference. The only script filters the extension
list as one types; without it the form still works.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

import yaml

from .assets import DEFAULT_SUFFIX, Asset, name

_STYLE = """
body { font-family: sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
fieldset { margin: 0 0 1rem; border: 1px solid #bbb; }
label { display: block; margin: .2rem 0; }
textarea, input[type=text], input[type=search] { width: 100%; box-sizing: border-box; }
pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; }
code#schematic-id { font-size: 1.1rem; background: #eef; padding: .2rem; }
.error { color: #a00; }
"""
_FILTER = """
document.getElementById('ext-search').addEventListener('input', function (e) {
  var q = e.target.value.toLowerCase();
  document.querySelectorAll('#extensions label').forEach(function (l) {
    l.style.display = l.textContent.toLowerCase().indexOf(q) < 0 ? 'none' : '';
  });
});
"""


def _page(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}{tail}"
            "</body></html>")  # fmt: skip


def _options(values: list[str], selected: str) -> str:
    return "".join(
        f"<option value='{escape(v)}'{' selected' if v == selected else ''}>{escape(v)}</option>"
        for v in values
    )


def form(versions: list[str], platforms: list[str], boards: list[tuple[str, str, str]],
         extensions: list[tuple[str, str]], secureboot: bool, token: bool,
         error: str = "") -> str:  # fmt: skip
    """The wizard. ``boards``: (value, overlay name, image); ``extensions``: (name, about)."""
    targets = [f"platform:{p}" for p in platforms] + [f"board:{v}" for v, _, _ in boards]
    labels = {f"platform:{p}": p for p in platforms}
    labels.update({f"board:{v}": f"{n} (overlay {i})" for v, n, i in boards})
    choices = "".join(
        f"<option value='{escape(t)}'{' selected' if t == 'platform:metal' else ''}>"
        f"{escape(labels[t])}</option>" for t in targets
    )  # fmt: skip
    ext_boxes = "".join(
        f"<label><input type=checkbox name=extension value='{escape(n)}'> {escape(n)}"
        f" <small>{escape(about)}</small></label>" for n, about in extensions
    )  # fmt: skip
    body = (
        (f"<p class=error id=error>{escape(error)}</p>" if error else "")
        + "<form method=post action='/ui/schematic' id=wizard>"
        f"<fieldset><legend>1. Version</legend><select name=version id=version>"
        f"{_options(versions, versions[-1])}</select></fieldset>"
        f"<fieldset><legend>2. Platform or board</legend><select name=target id=target>"
        f"{choices}</select></fieldset>"
        "<fieldset><legend>3. Architecture</legend>"
        "<label><input type=radio name=arch value=amd64 checked> amd64</label>"
        "<label><input type=radio name=arch value=arm64> arm64</label></fieldset>"
        "<fieldset><legend>4. Secure Boot</legend><label><input type=checkbox name=secureboot"
        f" value=1 id=secureboot{'' if secureboot else ' disabled'}> signed assets"
        f"{'' if secureboot else ' (this factory has no keys)'}</label></fieldset>"
        "<fieldset><legend>5. System extensions</legend>"
        "<input type=search id=ext-search placeholder='search extensions'>"
        f"<div id=extensions>{ext_boxes}</div></fieldset>"
        "<fieldset><legend>6. Customization</legend>"
        "<label>Extra kernel arguments (space separated)"
        "<input type=text name=kernel_args id=kernel-args></label>"
        "<label>META values, one KEY=VALUE a line"
        "<textarea name=meta id=meta rows=3></textarea></label></fieldset>"
        + (
            "<fieldset><legend>Token</legend><label>Bearer token to create schematics"
            "<input type=text name=token id=token></label></fieldset>"
            if token
            else ""
        )
        + "<button type=submit id=create>Create schematic</button></form>"
    )
    return _page("Image Factory", body, _FILTER)


def schematic_document(fields: dict[str, list[str]]) -> tuple[bytes, dict[str, str]]:
    """The schematic YAML the form's fields make, and the choices the result page needs."""
    target = (fields.get("target") or ["platform:metal"])[0]
    kind, _, value = target.partition(":")
    customization: dict = {}
    args = " ".join(fields.get("kernel_args") or []).split()
    if args:
        customization["extraKernelArgs"] = args
    meta = [line.strip() for text in fields.get("meta") or [] for line in text.splitlines()]
    entries = [line.partition("=") for line in meta if line]
    if entries:
        customization["meta"] = [{"key": _key(k.strip()), "value": v} for k, _, v in entries]
    if fields.get("extension"):
        customization["systemExtensions"] = {"officialExtensions": fields["extension"]}
    document: dict = {}
    choices = {"platform": value if kind == "platform" else "metal",
               "arch": (fields.get("arch") or ["amd64"])[0],
               "version": (fields.get("version") or [""])[0],
               "secureboot": "1" if fields.get("secureboot") else ""}  # fmt: skip
    if kind == "board":
        overlay_name, _, image = value.partition("@")
        document["overlay"] = {"image": image, "name": overlay_name}
    document["customization"] = customization
    return yaml.safe_dump(document, sort_keys=False).encode(), choices


def _key(text: str) -> int | str:
    """A META key as a number (``0xa`` too), or as typed, for the parse to refuse."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def parse_form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode(errors="replace"), keep_blank_values=False)


def result(base: str, schematic_id: str, canonical: str, choices: dict[str, str]) -> str:
    """The page of a created schematic: its ID, its YAML and where its assets are."""
    platform, arch, version = choices["platform"], choices["arch"], choices["version"]
    secure = bool(choices["secureboot"])
    prefix = f"{base}/image/{schematic_id}/{version}"
    assets = [Asset("image", arch, platform, secure, DEFAULT_SUFFIX.get(platform, "raw.zst"))]
    if platform == "metal":
        assets.insert(0, Asset("iso", arch, platform, secure))
    if secure:
        assets.append(Asset("uki", arch, platform, True))
    else:
        assets += [Asset("kernel", arch), Asset("initramfs", arch)]
    assets.append(Asset("cmdline", arch, platform, secure))
    links = "".join(
        f"<li><a class=asset href='{escape(prefix)}/{escape(name(a))}'>{escape(name(a))}</a></li>"
        for a in assets
    )
    host = base.split("://", 1)[-1]
    installer = "metal-installer" + ("-secureboot" if secure else "")
    if platform == "metal":
        reference = f"<code id=installer>{escape(host)}/{installer}/{escape(schematic_id)}:"
        reference += f"{escape(version)}</code>"
    else:
        reference = (f"<span id=installer>none for {escape(platform)}: this factory's"
                     " installer installs metal disks</span>")  # fmt: skip
    pxe = f"{base}/pxe/{schematic_id}/{version}/{platform}-{arch}{'-secureboot' if secure else ''}"
    body = (
        f"<p>Schematic ID: <code id=schematic-id>{escape(schematic_id)}</code></p>"
        f"<h2>Schematic</h2><pre id=schematic-yaml>{escape(canonical)}</pre>"
        f"<h2>Assets for {escape(version)}</h2><ul id=assets>{links}</ul>"
        f"<h2>PXE</h2><p><code id=pxe-url>{escape(pxe)}</code></p>"
        f"<h2>Installer image</h2><p>{reference}</p><p><a href='/'>Start over</a></p>"
    )
    return _page("Your schematic", body)
