#!/usr/bin/env bash
# Builds the oxtest guest from source with the machine's gcc and binutils.
#   tests/guests/build.sh OUTDIR
# Outputs in OUTDIR:
#   oxtest.elf      ELF64 with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY): PVH entry
#   oxtest.bzImage  bzImage form (boot protocol 2.15, XLF_KERNEL_64): 64-bit entry at
#                   code32_start + 0x200, or real-mode setup for loaders that use it
#   bootsector.bin  a 512-byte BIOS boot sector (bootsector/boot.S) for firmware tests
#   oxefi.efi       a UEFI application (PE32+, efi/oxefi.c) for the OVMF tests
# The test harness (oxvirt-tests) calls this into a cache directory keyed by a hash
# of the sources, so it only reruns when they change.
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUTDIR}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CC="${CC:-gcc}"

cflags=(-m64 -O2 -std=gnu11 -ffreestanding -fno-builtin -fno-stack-protector -fno-pic -fno-pie
        -mno-red-zone -mgeneral-regs-only -fcf-protection=none -fno-asynchronous-unwind-tables
        --param=min-pagesize=0 -fno-delete-null-pointer-checks -Wall -Wextra -Werror)
"$CC" "${cflags[@]}" -c "$src/guest.c" -o "$tmp/guest.o"
"$CC" -m64 -fno-pic -c "$src/entry.S" -o "$tmp/entry.o"
ld -m elf_x86_64 -nostdlib -static -no-pie --build-id=none -z noexecstack -z max-page-size=0x1000 --no-warn-rwx-segments \
   -T "$src/guest.ld" "$tmp/entry.o" "$tmp/guest.o" -o "$tmp/oxtest.elf"

# bzImage = real-mode setup sectors + the flat protected-mode image (loaded at 1 MiB).
"$CC" -m64 -c "$src/setup.S" -o "$tmp/setup.o"
ld -m elf_x86_64 -nostdlib -static --build-id=none --section-start=.setup=0 -e _start "$tmp/setup.o" -o "$tmp/setup.elf"
objcopy -O binary -j .setup "$tmp/setup.elf" "$tmp/setup.bin"
objcopy -O binary -R .note "$tmp/oxtest.elf" "$tmp/payload.bin"
size=$(stat -c %s "$tmp/payload.bin")
# syssize: payload size in 16-byte paragraphs, little-endian u32 at 0x1f4
printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(( (size+15)/16 & 255 )) $(( (size+15)/16 >> 8 & 255 )) \
  $(( (size+15)/16 >> 16 & 255 )) $(( (size+15)/16 >> 24 & 255 )))" |
  dd of="$tmp/setup.bin" bs=1 seek=$((0x1f4)) conv=notrunc status=none
cat "$tmp/setup.bin" "$tmp/payload.bin" > "$tmp/oxtest.bzImage"

# The BIOS boot sector: 16-bit code linked at 0x7c00, flat.
as --32 "$src/bootsector/boot.S" -o "$tmp/bootsector.o"
ld -m elf_i386 -nostdlib -static --build-id=none -Ttext 0x7c00 -e _start --oformat binary \
   "$tmp/bootsector.o" -o "$tmp/bootsector.bin"
test "$(stat -c %s "$tmp/bootsector.bin")" = 512

# The UEFI application: position-independent ELF shared object (no gnu-efi: efi/efi.ld is
# its linker script trimmed, efi/reloc.S its dummy .reloc), then objcopy to PE32+ with
# subsystem 10 (EFI application). It has no self-relocation code, so it must have no
# relocations: check.
"$CC" -m64 -O2 -std=gnu11 -ffreestanding -fno-builtin -fno-stack-protector -fpic -fshort-wchar \
      -mno-red-zone -mgeneral-regs-only -fcf-protection=none -fno-asynchronous-unwind-tables \
      -fno-jump-tables -fvisibility=hidden -Wall -Wextra -Werror \
      -c "$src/efi/oxefi.c" -o "$tmp/oxefi.o"
"$CC" -m64 -c "$src/efi/reloc.S" -o "$tmp/efireloc.o"
ld -m elf_x86_64 -nostdlib -shared -Bsymbolic -z nocombreloc --build-id=none --no-undefined \
   -T "$src/efi/efi.ld" "$tmp/oxefi.o" "$tmp/efireloc.o" -o "$tmp/oxefi.so"
if readelf -rW "$tmp/oxefi.so" | grep -q '^ *[0-9a-f]\{8,\} '; then
  echo "oxefi.so has relocations; oxefi must stay free of them (no pointers in data):" >&2
  readelf -rW "$tmp/oxefi.so" >&2
  exit 1
fi
objcopy -j .text -j .data -j .reloc --target=efi-app-x86_64 --subsystem=10 \
        "$tmp/oxefi.so" "$tmp/oxefi.efi"

mv "$tmp/oxtest.elf" "$tmp/oxtest.bzImage" "$tmp/bootsector.bin" "$tmp/oxefi.efi" "$out/"

# flashtest.rom: a 64 KiB firmware image (flashtest/flashtest.S) that checks the CFI flash
# below it; real-mode reset vector + 32-bit code, linked where it runs (the top 64 KiB
# below 4 GiB), flat.
as --32 "$src/flashtest/flashtest.S" -o "$tmp/flashtest.o"
ld -m elf_i386 -nostdlib -static --build-id=none -Ttext 0xffff0000 -e _start --oformat binary \
   "$tmp/flashtest.o" -o "$tmp/flashtest.rom"
test "$(stat -c %s "$tmp/flashtest.rom")" = 65536
mv "$tmp/flashtest.rom" "$out/"
