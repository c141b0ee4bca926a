"""Making qemu-img's VHD and VMDK files reproducible, and the OVF of an OVA.

qemu-img stamps each VHD footer with the current time and a random UUID, and each VMDK
descriptor with a random content ID; those bytes are set here from the build's epoch
and a name, so the same disk always gives the same file.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from xml.sax.saxutils import quoteattr

QEMU_IMG = {
    "qcow2": ["-O", "qcow2", "-o", "compat=1.1"],
    "vhd": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
    "ova": ["-O", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic"],
}
"""``qemu-img convert`` flags for each format made from a raw disk: a fixed VHD sized to
whole MiB (as Azure wants), and the stream-optimized VMDK of an OVA."""
VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z, where VHD timestamps count from
_FOOTER = 512


def fix_vhd(path: Path, epoch: int, name: str) -> None:
    """Set the footer's timestamp and UUID of the VHD at ``path``; fix its checksum."""
    with open(path, "r+b") as f:
        f.seek(-_FOOTER, 2)
        at = f.tell()
        footer = bytearray(f.read(_FOOTER))
        if footer[:8] != b"conectix":
            raise ValueError(f"{path.name} has no VHD footer")
        struct.pack_into(">I", footer, 24, max(epoch - VHD_EPOCH, 0))
        footer[68:84] = hashlib.sha256(name.encode()).digest()[:16]
        struct.pack_into(">I", footer, 64, 0)
        struct.pack_into(">I", footer, 64, ~sum(footer) & 0xFFFFFFFF)
        f.seek(at)
        f.write(footer)


def fix_vmdk(path: Path, name: str) -> None:
    """Set the content ID (CID) in the embedded descriptor of a VMDK at ``path``.

    qemu-img writes the CID without leading zeros, so the line's length varies: the
    descriptor text is rewritten whole, padded to its fixed region.
    """
    with open(path, "r+b") as f:
        header = f.read(512)
        if header[:4] != b"KDMV":
            raise ValueError(f"{path.name} is not a sparse VMDK")
        offset, size = struct.unpack_from("<QQ", header, 28)
        f.seek(offset * 512)
        region = f.read(size * 512)
        text = region.split(b"\0", 1)[0]
        cid = hashlib.sha256(name.encode()).hexdigest()[:8].encode()
        fixed, found = re.subn(rb"(?m)^CID=[0-9a-fA-F]+$", b"CID=" + cid, text)
        if found != 1 or len(fixed) >= len(region):
            raise ValueError(f"{path.name} has no CID line in its descriptor")
        f.seek(offset * 512)
        f.write(fixed.ljust(len(region), b"\0"))


def ovf(name: str, disk_file: str, file_size: int, capacity: int) -> str:
    """An OVF 1.0 descriptor for one VM booting the stream-optimized disk ``disk_file``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>
    <File ovf:href={quoteattr(disk_file)} ovf:id="file1" ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1"
      ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id={quoteattr(name)}>
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other5xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-15</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>2 virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>2048MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""
