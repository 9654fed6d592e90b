#!/bin/bash
# Regenerates the 100-virt-install-*.xml corpus files: real `virt-install --print-xml`
# output (Debian 12 virtinst 4.1) against libvirt's test driver, which only offers i686
# guests (so the files say arch='i686' and type='test').
# Run from this directory: ./virt-install-gen.sh
set -u
V="virt-install --print-xml --connect test:///default --noautoconsole"
touch /tmp/installer.iso
gen() {
  local name=$1; shift
  if timeout 120 $V --name "$name" "$@" > "100-virt-install-$name.xml" 2> /tmp/vi-err; then
    sed -i "s#/tmp/installer.iso#/var/lib/libvirt/images/installer.iso#" "100-virt-install-$name.xml"
    echo "ok $name"
  else
    echo "FAIL $name: $(tail -2 /tmp/vi-err)"; rm -f "100-virt-install-$name.xml"
  fi
}
gen debian11-defaults --memory 512 --disk size=1 --os-variant debian11 --import
gen fedora37-q35-headless --memory 2048 --vcpus 2 --os-variant fedora37 --import --disk path=/var/lib/libvirt/images/f37.qcow2,bus=virtio,format=qcow2,size=1 --graphics none --network bridge=br0,model=virtio --console pty,target_type=serial
gen win10 --memory 4096 --vcpus 4 --os-variant win10 --import --disk size=1
gen kernel-boot --memory 256 --vcpus 1 --os-variant linux2020 --boot kernel=/var/lib/oxvirt/vmlinux,initrd=/var/lib/oxvirt/initrd.img,kernel_args="console=ttyS0 root=/dev/vda" --disk path=/var/lib/oxvirt/root.raw,bus=virtio,format=raw,size=1 --graphics none --network none --serial pty --sound none --video none --memballoon none --rng /dev/urandom --controller usb,model=none
gen cpu-topology --memory 1024 --vcpus 4,sockets=1,cores=2,threads=2 --cpu host-passthrough --os-variant debian11 --import --disk size=1 --graphics none
gen network-direct --memory 1024 --os-variant centos8 --import --disk size=1 --network type=direct,source=eth0,source.mode=bridge,model=virtio --network network=default,mac=52:54:00:11:22:33 --graphics spice
gen features-clock --memory 1024 --os-variant rhel9.0 --import --disk size=1 --features acpi=on,apic=on,smm.state=off --clock offset=localtime,rtc_tickpolicy=catchup --pm suspend_to_mem.enabled=no --events on_poweroff=destroy,on_reboot=restart,on_crash=restart --metadata title="Web server",description="Serves the web"
gen alpine-virtio-console --memory 256 --os-variant alpinelinux3.17 --import --disk path=/var/lib/libvirt/images/alpine.raw,size=1,bus=virtio,cache=none,io=native,discard=unmap --console pty,target_type=virtio --graphics none --memballoon virtio,stats.period=10
gen ubuntu-cloud --memory 2048 --vcpus 2 --os-variant ubuntu22.10 --import --disk size=1,serial=root-disk --disk size=1,readonly=on,shareable=on --network bridge=virbr0 --graphics none --noreboot
gen scsi-disks --memory 1024 --os-variant debian10 --import --disk size=1,bus=scsi --controller scsi,model=virtio-scsi --disk size=1,bus=sata --disk device=floppy,size=1 --graphics none
gen hugepages-numa --memory 4096 --vcpus 4 --os-variant rhel8.6 --import --disk size=1 --memorybacking hugepages=on --cpu host-model --numatune 0 --graphics none
gen devices-zoo2 --memory 1024 --os-variant generic --import --disk size=1 --graphics none --watchdog i6300esb,action=poweroff --tpm emulator,model=tpm-crb --filesystem /srv/share,share,driver.type=virtiofs --memorybacking access.mode=shared,source.type=memfd --rng /dev/random --panic isa --vsock cid.auto=yes --channel unix,target_type=virtio,name=org.qemu.guest_agent.0 --smartcard passthrough,type=spicevmc --redirdev usb,type=tcp,server=localhost:4000
gen cdrom-install2 --memory 2048 --os-variant ubuntu22.10 --disk size=1 --disk /tmp/installer.iso,device=cdrom --graphics vnc --boot cdrom,hd,menu=on
gen serial-tcp --memory 512 --os-variant linux2020 --import --disk size=1 --graphics none --serial tcp,host=0.0.0.0:4555,mode=bind,protocol.type=raw --serial file,path=/var/log/guest-serial.log --parallel pty --console pty
gen sound-video --memory 2048 --os-variant fedora37 --import --disk size=1 --sound ich9 --video virtio --graphics spice,gl.enable=no --input keyboard,bus=virtio
gen hostdev-usb --memory 1024 --os-variant debian11 --import --disk size=1 --graphics none --controller type=virtio-serial --channel pty,target_type=virtio,name=org.example.pty --iommu model=intel --shmem name=ivshmem0,model.type=ivshmem-plain,size=4,size.unit=M
