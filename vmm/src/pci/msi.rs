//! The MSI capability (PCI Local Bus 3.0 §6.8.1) with one vector, 64-bit
//! addresses and no per-vector masking: what QEMU's ICH9 AHCI offers and Linux's
//! `ahci` driver enables.
//!
//! Layout in configuration space, from the capability's offset:
//! `+0` ID 0x05, `+1` next, `+2` message control (bit 0 enable, bits 4-6
//! multiple message enable, bit 7 64-bit capable), `+4` address low, `+8`
//! address high, `+12` data.
//!
//! The function keeps its INTx pin: it interrupts by MSI while the driver has
//! MSI enabled, by INTx otherwise.

use std::sync::Arc;

use super::config::ConfigSpace;
use super::msix::{MsiMessage, MsiSink};

/// Capability ID of MSI.
const CAP_ID_MSI: u8 = 0x05;
/// Message control: MSI enable.
const CONTROL_ENABLE: u8 = 0x01;
/// Message control: 64-bit address capable.
const CONTROL_64BIT: u8 = 0x80;
/// Capability length (with the 64-bit address, without mask bits).
const CAP_LEN: usize = 14;

/// One function's MSI capability and the route of its single vector.
pub struct Msi {
    /// Offset of the capability in configuration space.
    offset: usize,
    sink: Arc<dyn MsiSink>,
    /// The message last given to the sink and whether it was enabled.
    programmed: Option<(MsiMessage, bool)>,
}

impl Msi {
    /// Adds the capability to `config`; `sink` delivers its vector 0.
    pub fn add(config: &mut ConfigSpace, sink: Arc<dyn MsiSink>) -> Self {
        let mut body = [0u8; CAP_LEN];
        body[0] = CAP_ID_MSI;
        body[2] = CONTROL_64BIT;
        // Writable: enable and multiple message enable (read back; one vector
        // is used whatever it says), the address (dword aligned), the data.
        let mut writable = [0u8; CAP_LEN];
        writable[2] = 0x71;
        writable[4] = 0xfc;
        writable[5..14].fill(0xff);
        let offset = config.add_capability(&body, &writable);
        Msi {
            offset,
            sink,
            programmed: None,
        }
    }

    /// Whether the driver enabled MSI.
    pub fn enabled(&self, config: &ConfigSpace) -> bool {
        config.byte(self.offset + 2) & CONTROL_ENABLE != 0
    }

    /// The message as configuration space holds it.
    fn message(&self, config: &ConfigSpace) -> MsiMessage {
        let b = |i: usize| config.byte(self.offset + i);
        let dword = |at: usize| u32::from_le_bytes([b(at), b(at + 1), b(at + 2), b(at + 3)]);
        MsiMessage {
            address: u64::from(dword(4)) | u64::from(dword(8)) << 32,
            data: u32::from(u16::from_le_bytes([b(12), b(13)])),
        }
    }

    /// After a configuration write: routes the vector anew if the message or the
    /// enable bit changed. Returns whether MSI is enabled.
    pub fn config_written(&mut self, config: &ConfigSpace) -> bool {
        let now = (self.message(config), self.enabled(config));
        if self.programmed != Some(now) {
            self.sink.program(0, now.0, !now.1);
            self.programmed = Some(now);
        }
        now.1
    }

    /// Delivers the vector (the caller checked [`Msi::enabled`]).
    pub fn trigger(&self) {
        self.sink.trigger(0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::pci::PciHeader;

    #[derive(Default)]
    struct Recorder {
        programmed: Mutex<Vec<(MsiMessage, bool)>>,
        fired: Mutex<u32>,
    }

    impl MsiSink for Recorder {
        fn program(&self, _vector: u16, msg: MsiMessage, masked: bool) {
            self.programmed.lock().unwrap().push((msg, masked));
        }
        fn trigger(&self, _vector: u16) {
            *self.fired.lock().unwrap() += 1;
        }
    }

    #[test]
    fn driver_programs_and_enables_the_vector() {
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x8086,
            device: 0x2922,
            revision: 2,
            class: 0x01_0601,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        let sink = Arc::new(Recorder::default());
        let mut msi = Msi::add(&mut config, sink.clone());
        let at = msi.offset;
        assert_eq!(config.byte(at), CAP_ID_MSI);
        assert_eq!(config.byte(at + 2), CONTROL_64BIT, "one vector, 64-bit");
        assert!(!msi.config_written(&config));
        // Linux: address, data, then the enable bit.
        let reg = at / 4;
        config.write(reg + 1, 0, &0xfee0_1003u32.to_le_bytes());
        config.write(reg + 2, 0, &0u32.to_le_bytes());
        config.write(reg + 3, 0, &0x4041u16.to_le_bytes());
        config.write(reg, 2, &[CONTROL_ENABLE | 0x70]);
        assert!(msi.config_written(&config));
        let last = *sink.programmed.lock().unwrap().last().unwrap();
        assert_eq!(
            last,
            (
                MsiMessage {
                    address: 0xfee0_1000,
                    data: 0x4041
                },
                false
            )
        );
        assert_eq!(config.byte(at + 2) & 0x80, 0x80, "64-bit bit is read-only");
        msi.trigger();
        assert_eq!(*sink.fired.lock().unwrap(), 1);
        // Disabling masks the route again.
        config.write(reg, 2, &[0]);
        assert!(!msi.config_written(&config));
        assert!(sink.programmed.lock().unwrap().last().unwrap().1);
    }
}
