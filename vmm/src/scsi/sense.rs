//! SCSI status and sense data (SPC-4 §4.5), fixed format.

/// SCSI status byte values (SAM-5 §5.3).
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
}

/// Length of fixed-format sense data as we produce it.
pub const FIXED_SENSE_LEN: usize = 18;

/// A sense key with its additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// NO SENSE.
    pub const NONE: Sense = Sense::new(0x00, 0x00, 0x00);
    /// NOT READY, MEDIUM NOT PRESENT.
    pub const NO_MEDIUM: Sense = Sense::new(0x02, 0x3a, 0x00);
    /// NOT READY, MEDIUM NOT PRESENT - TRAY OPEN.
    pub const NO_MEDIUM_TRAY_OPEN: Sense = Sense::new(0x02, 0x3a, 0x02);
    /// MEDIUM ERROR, UNRECOVERED READ ERROR.
    pub const READ_ERROR: Sense = Sense::new(0x03, 0x11, 0x00);
    /// MEDIUM ERROR, WRITE ERROR.
    pub const WRITE_ERROR: Sense = Sense::new(0x03, 0x0c, 0x00);
    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub const INVALID_OPCODE: Sense = Sense::new(0x05, 0x20, 0x00);
    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(0x05, 0x21, 0x00);
    /// ILLEGAL REQUEST, INVALID FIELD IN CDB.
    pub const INVALID_FIELD: Sense = Sense::new(0x05, 0x24, 0x00);
    /// ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(0x05, 0x25, 0x00);
    /// ILLEGAL REQUEST, SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(0x05, 0x39, 0x00);
    /// ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED.
    pub const REMOVAL_PREVENTED: Sense = Sense::new(0x05, 0x53, 0x02);
    /// UNIT ATTENTION, NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const MEDIUM_CHANGED: Sense = Sense::new(0x06, 0x28, 0x00);
    /// DATA PROTECT, WRITE PROTECTED.
    pub const WRITE_PROTECTED: Sense = Sense::new(0x07, 0x27, 0x00);
    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR (a data buffer shorter
    /// than the transfer the CDB asks for).
    pub const SHORT_BUFFER: Sense = Sense::new(0x05, 0x1a, 0x00);

    /// A sense triple.
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Sense { key, asc, ascq }
    }

    /// Fixed-format sense data (response code 0x70, current error).
    pub fn fixed(&self) -> [u8; FIXED_SENSE_LEN] {
        let mut b = [0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = self.key & 0x0f;
        // Additional sense length: bytes 8..18.
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = self.asc;
        b[13] = self.ascq;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_layout() {
        let b = Sense::NO_MEDIUM.fixed();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x02);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x3a, 0x00));
    }
}
