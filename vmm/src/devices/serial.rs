//! The 16550A UART (vm-superio) on the legacy COM ports, with its interrupt on
//! an irqfd and its bytes on a [`ChardevWriter`].

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::BusDevice;
use super::chardev::ChardevWriter;

/// Legacy COM port I/O bases, COM1..COM4.
pub const COM_PORTS: [u16; 4] = [0x3f8, 0x2f8, 0x3e8, 0x2e8];
/// Legacy COM IRQs, COM1..COM4.
pub const COM_IRQS: [u32; 4] = [4, 3, 4, 3];
/// Registers per UART.
pub const COM_PORT_LEN: u64 = 8;

/// Raises the UART's interrupt by writing its irqfd.
pub struct IrqFdTrigger(pub EventFd);

impl Trigger for IrqFdTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Tells the main loop when the guest has drained the receive FIFO, so it can
/// read more input from the backend.
pub struct RxSpace(pub EventFd);

impl SerialEvents for RxSpace {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

/// One UART on the port-I/O bus.
pub struct SerialDevice {
    uart: Serial<IrqFdTrigger, RxSpace, ChardevWriter>,
}

impl SerialDevice {
    /// A UART raising `irq` and writing to `out`; `rx_space` fires when its FIFO empties.
    pub fn new(irq: EventFd, rx_space: EventFd, out: ChardevWriter) -> Self {
        SerialDevice {
            uart: Serial::with_events(IrqFdTrigger(irq), RxSpace(rx_space), out),
        }
    }

    /// Free room in the receive FIFO.
    pub fn rx_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues input for the guest; returns how many bytes fit.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

/// The UART's registers and receive FIFO (vm-superio's `SerialState`, which has no
/// serde of its own).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedUart {
    dll: u8,
    dlm: u8,
    ier: u8,
    iir: u8,
    lcr: u8,
    lsr: u8,
    mcr: u8,
    msr: u8,
    scr: u8,
    rx: Vec<u8>,
}

impl crate::vmstate::Stateful for SerialDevice {
    fn save_state(&self) -> serde_json::Value {
        let s = self.uart.state();
        crate::vmstate::to_value(&SavedUart {
            dll: s.baud_divisor_low,
            dlm: s.baud_divisor_high,
            ier: s.interrupt_enable,
            iir: s.interrupt_identification,
            lcr: s.line_control,
            lsr: s.line_status,
            mcr: s.modem_control,
            msr: s.modem_status,
            scr: s.scratch,
            rx: s.in_buffer,
        })
    }

    fn restore_state(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let s: SavedUart = crate::vmstate::from_value(v)?;
        let state = vm_superio::serial::SerialState {
            baud_divisor_low: s.dll,
            baud_divisor_high: s.dlm,
            interrupt_enable: s.ier,
            interrupt_identification: s.iir,
            line_control: s.lcr,
            line_status: s.lsr,
            modem_control: s.mcr,
            modem_status: s.msr,
            scratch: s.scr,
            in_buffer: s.rx,
        };
        let irq = self
            .uart
            .interrupt_evt()
            .0
            .try_clone()
            .map_err(|e| e.to_string())?;
        let space = self
            .uart
            .events()
            .0
            .try_clone()
            .map_err(|e| e.to_string())?;
        let out = self.uart.writer().clone();
        self.uart = Serial::from_state(&state, IrqFdTrigger(irq), RxSpace(space), out)
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if let Some(first) = data.first_mut() {
            *first = self.uart.read(offset as u8);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            if let Err(e) = self.uart.write(offset as u8, b) {
                tracing::debug!(error = ?e, "serial write");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::chardev::Chardev;
    use machine_spec::CharBackend;

    #[test]
    fn thr_writes_reach_the_backend_and_raise_the_irq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let c = Chardev::open(
            "serial0",
            &CharBackend::File {
                path: path.clone(),
                append: false,
            },
        )
        .unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let space = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = SerialDevice::new(
            irq.try_clone().unwrap(),
            space.try_clone().unwrap(),
            c.writer(),
        );
        // Enable the THR-empty interrupt, then send two bytes.
        s.write(0x3f8, 1, &[0x02]);
        s.write(0x3f8, 0, b"o");
        s.write(0x3f8, 0, b"k");
        assert_eq!(std::fs::read(&path).unwrap(), b"ok");
        assert!(irq.read().unwrap() >= 1);
        // Input: enable RX interrupt, queue, read back through RBR.
        s.write(0x3f8, 1, &[0x01]);
        assert_eq!(s.enqueue_input(b"z"), 1);
        let mut lsr = [0u8];
        s.read(0x3f8, 5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut rbr = [0u8];
        s.read(0x3f8, 0, &mut rbr);
        assert_eq!(rbr[0], b'z');
        assert_eq!(space.read().unwrap(), 1, "FIFO drained");
    }
}
