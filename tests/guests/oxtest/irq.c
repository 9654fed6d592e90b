/*
 * oxtest guest: IDT, exceptions, local APIC, IOAPIC, interrupt handlers.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- interrupts */

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern char exc_stubs[], irq_stubs[], irq_stub_spurious[];

static void idt_set(int v, void *fn)
{
	uint64_t a = (uint64_t)fn;
	idt[v].off0 = (uint16_t)a;
	idt[v].sel = 0x08;
	idt[v].ist = 0;
	idt[v].type = 0x8e;
	idt[v].off1 = (uint16_t)(a >> 16);
	idt[v].off2 = (uint32_t)(a >> 32);
	idt[v].zero = 0;
}

static void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" ::"m"(d));
}

static void idt_init(void)
{
	for (int v = 0; v < 32; v++)
		idt_set(v, exc_stubs + 16 * v);
	for (int v = 0x20; v < 0xff; v++)
		idt_set(v, irq_stubs + 16 * (v - 0x20));
	idt_set(0xff, irq_stub_spurious);
	idt_load();
}

/* frame: vector, error code, rip, cs, rflags, rsp, ss */
void exception(uint64_t *frame)
{
	line_len = 0;
	result("exception", 0);
	put("vector=");
	put_dec(frame[0]);
	put(" error=");
	put_hex(frame[1]);
	put(" rip=");
	put_hex(frame[2]);
	if (frame[0] == 14) {
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		put(" cr2=");
		put_hex(cr2);
	}
	flush();
	halt_forever();
}

static uint64_t lapic_base(void) { return rdmsr(0x1b) & ~0xfffull; }
static uint32_t lapic_read(uint32_t reg) { return mmio_read32(lapic_base() + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(lapic_base() + reg, v); }
static uint32_t lapic_id(void) { return lapic_read(0x20) >> 24; }

static void lapic_enable(void)
{
	/* Mask the 8259s: only the LAPIC and IOAPIC deliver interrupts here. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_write(0xf0, 0x1ff);	/* software enable, spurious vector 0xff */
	lapic_write(0x80, 0);		/* task priority: accept all */
}

static volatile int sci_seen, pwrbtn_seen, com1_irqs, com1_thre;
static volatile uint64_t ticks;
/* Interrupts taken per vector (every vector, including device ones). */
static volatile uint32_t irq_count[256];
/* Level-triggered device interrupts (virtio INTx), possibly several devices on one
 * line: for each source on the vector, the handler reads its status byte (the virtio
 * ISR; the read clears it, which lets the device's line drop) before the EOI, and ORs
 * what it read into the source's bits. */
struct irq_src {
	uint8_t vector;
	uint64_t reg;
	volatile uint8_t bits;
};
#define MAX_IRQ_SRCS 32
static struct irq_src irq_srcs[MAX_IRQ_SRCS];
static int n_irq_srcs;

/* The source for status register `reg` on `vector` (added on first use). */
static struct irq_src *irq_src_add(uint8_t vector, uint64_t reg)
{
	for (int i = 0; i < n_irq_srcs; i++)
		if (irq_srcs[i].reg == reg) {
			irq_srcs[i].vector = vector;
			return &irq_srcs[i];
		}
	if (n_irq_srcs == MAX_IRQ_SRCS)
		return 0;
	struct irq_src *s = &irq_srcs[n_irq_srcs];
	s->vector = vector;
	s->reg = reg;
	s->bits = 0;
	n_irq_srcs++;
	return s;
}

static void pm1_write_sts(uint16_t v)
{
	outw((uint16_t)acpi.pm1a_evt, v);
}

void irq_handler(int vector)
{
	vector &= 0xff;
	irq_count[vector]++;
	for (int i = 0; i < n_irq_srcs; i++)
		if (irq_srcs[i].vector == vector)
			irq_srcs[i].bits |= *(volatile uint8_t *)irq_srcs[i].reg;
	if (vector == 0x30) {
		sci_seen++;
		if (acpi.pm1a_evt) {
			uint16_t sts = inw((uint16_t)acpi.pm1a_evt);
			if (sts & (1 << 8)) {
				pwrbtn_seen = 1;
				pm1_write_sts(1 << 8);	/* write 1 to clear before EOI (level-triggered) */
			}
		}
	} else if (vector == 0x40) {
		ticks++;
	} else if (vector == 0x34) {
		com1_irqs++;
		if ((inb(COM1 + 2) & 0x0f) == 0x02)	/* IIR: THR empty (reading IIR clears it) */
			com1_thre++;
	}
	lapic_write(0xb0, 0);	/* EOI */
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(acpi.ioapic, reg);
	mmio_write32(acpi.ioapic + 0x10, v);
}
