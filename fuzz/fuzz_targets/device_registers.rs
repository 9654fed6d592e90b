//! Fuzzes the device models a guest drives directly (AHCI, PIIX IDE, e1000/e1000e,
//! standard VGA, fw_cfg, CMOS, i8042, TPM CRB/TIS) through their register
//! interfaces, as `vmm::devfuzz` describes: the input is a program of port, MMIO,
//! PCI configuration and BAR accesses, guest-memory writes and whole requests
//! (AHCI command tables, fw_cfg DMA, bus-master IDE). No access may panic, and no
//! disk access may go past the image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vmm::devfuzz::run(data);
});
