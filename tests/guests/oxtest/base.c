/*
 * oxtest guest: memory/string helpers, port and MMIO access, TSC delays, COM1 line output.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- basics */

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

static size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Busy wait; assumes a TSC of about 3 GHz (only the order of magnitude matters). */
static void delay_us(uint64_t us)
{
	uint64_t end = rdtsc() + us * 3000;
	while (rdtsc() < end)
		cpu_relax();
}

/* ---------------------------------------------------------------- serial output */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8n1 */
	outb(COM1 + 4, 0x03);	/* DTR | RTS */
}

static void serial_putc(char c)
{
	for (int i = 0; i < 1000 && !(inb(COM1 + 5) & 0x20); i++)
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

/* A line is assembled here and written with one call: only the BSP prints. */
static char line[2304];	/* room for a 2047-byte command line echo */
static size_t line_len;

static void put(const char *s)
{
	while (*s && line_len < sizeof(line) - 2)
		line[line_len++] = *s++;
}

static void put_dec(uint64_t v)
{
	char b[24];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i--) {
		char c[2] = { b[i], 0 };
		put(c);
	}
}

static void put_hex(uint64_t v)
{
	char b[20];
	int i = 0;
	do {
		b[i++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	put("0x");
	while (i--) {
		char c[2] = { b[i], 0 };
		put(c);
	}
}

static void put_sig(const uint8_t *sig)
{
	char c[5] = { (char)sig[0], (char)sig[1], (char)sig[2], (char)sig[3], 0 };
	for (int i = 0; i < 4; i++)
		if (c[i] < 0x20 || c[i] > 0x7e)
			c[i] = '?';
	put(c);
}

/* `quiet` on the command line: only READY, DONE, failures and the final action's lines. */
static int quiet;

static void flush(void)
{
	if (quiet && line_len > 7 && memcmp(line, "OXTEST DONE", 11) && memcmp(line, "OXTEST READY", 12)) {
		int keep = 0;
		for (size_t i = 0; i + 6 <= line_len; i++)
			if (!memcmp(line + i, " FAIL ", 6) || !memcmp(line + i, " tick ", 6) ||
			    !memcmp(line + i, " trying ", 8) || !memcmp(line + i, " armed ", 7))
				keep = 1;
		if (!keep) {
			line_len = 0;
			return;
		}
	}
	line[line_len++] = '\n';
	for (size_t i = 0; i < line_len; i++)
		serial_putc(line[i]);
	line_len = 0;
}

/* Starts a result line: "OXTEST <check> ok " or "OXTEST <check> FAIL ". */
static int failures;
static void result(const char *check, int ok)
{
	put("OXTEST ");
	put(check);
	put(ok ? " ok " : " FAIL ");
	if (!ok)
		failures++;
}

static void say(const char *check, int ok, const char *text)
{
	result(check, ok);
	put(text);
	flush();
}
