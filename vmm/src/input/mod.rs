//! Input devices: the i8042 keyboard controller with its PS/2 keyboard and mouse.
//! The host side (VNC, QMP `send-key`, `input-send-event`) reaches them through the
//! display console's [`InputRouter`](crate::display::InputRouter).

pub mod i8042;
pub mod ps2;
pub mod virtio_input;

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use crate::devices::pm::IrqLine;
use crate::display::input::{Keyboard, Pointer};
use crate::lifecycle::ExitSink;
use i8042::I8042;

/// Plugs a virtio input device into `router`, ahead of the PS/2 devices.
pub fn route_virtio(router: &crate::display::InputRouter, shared: Arc<virtio_input::Shared>) {
    if shared.is_pointer() {
        router.add_pointer_first(shared);
    } else {
        router.add_keyboard_first(shared);
    }
}

/// An ISA interrupt line of the in-kernel PIC/IO-APIC.
struct IsaIrq {
    vm: Arc<VmFd>,
    irq: u32,
}

impl IrqLine for IsaIrq {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.irq, high) {
            tracing::warn!(irq = self.irq, error = %e, "cannot set IRQ line");
        }
    }
}

/// A machine's i8042 with IRQs 1 and 12 on `vm` and its reset line on `exits`.
pub fn i8042(vm: &Arc<VmFd>, exits: ExitSink) -> Arc<Mutex<I8042>> {
    let line = |irq| -> Box<dyn IrqLine> {
        Box::new(IsaIrq {
            vm: vm.clone(),
            irq,
        })
    };
    Arc::new(Mutex::new(I8042::new(
        line(i8042::KBD_IRQ),
        line(i8042::AUX_IRQ),
        Some(exits),
    )))
}

/// The PS/2 keyboard and mouse as the input router drives them.
pub struct Ps2(pub Arc<Mutex<I8042>>);

impl Ps2 {
    fn lock(&self) -> std::sync::MutexGuard<'_, I8042> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Keyboard for Ps2 {
    fn key(&self, linux_keycode: u16, down: bool) {
        self.lock().key(linux_keycode, down);
    }
    fn active(&self) -> bool {
        true
    }
    fn leds(&self) -> u8 {
        self.lock().kbd.leds
    }
}

impl Pointer for Ps2 {
    fn absolute(&self) -> bool {
        false
    }
    fn active(&self) -> bool {
        true
    }
    fn abs(&self, _x: u32, _y: u32) {}
    fn rel(&self, dx: i32, dy: i32) {
        self.lock().mouse_rel(dx, dy);
    }
    fn buttons(&self, mask: u8) {
        self.lock().mouse_buttons(mask);
    }
}
