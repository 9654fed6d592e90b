/*
 * oxefi: a UEFI application of ours (tests/tests/firmware_ovmf.rs), booted by OVMF as
 * \EFI\BOOT\BOOTX64.EFI from a FAT ESP (oxvirt_tests::guests::esp_disk). It
 *   1. prints "OXEFI-OK fw=<vendor> rev=<hex>" through ConOut (OVMF mirrors its console
 *      to COM1) and with its own UART writes to COM1 (0x3f8), so a test sees it either
 *      way; every line below goes both ways too;
 *   2. checks the NVRAM: GetVariable(L"OxvirtTest", OXVIRT_TEST_GUID): if present,
 *      prints "OXEFI-VAR found=<value>"; if not found, SetVariable with
 *      NON_VOLATILE|BOOTSERVICE_ACCESS|RUNTIME_ACCESS and the value "1" and prints
 *      "OXEFI-VAR set" (or "OXEFI-VAR FAIL op=get|set status=<hex>");
 *   3. powers off: ResetSystem(EfiResetShutdown); if that returns it prints
 *      "OXEFI-SHUTDOWN-RETURNED" and halts.
 * No gnu-efi: the few UEFI 2.x definitions it uses are below. Built position-independent
 * with no relocations at all (build.sh checks), so the empty .reloc section gnu-efi's
 * way (reloc.S) is all the PE needs.
 */
#include <stdint.h>
#include <stddef.h>

typedef uint64_t efi_status;
typedef uint16_t char16;
typedef void *efi_handle;
#define EFIAPI __attribute__((ms_abi))
#define EFI_ERROR_BIT (1ull << 63)
#define EFI_BUFFER_TOO_SMALL (EFI_ERROR_BIT | 5)
#define EFI_NOT_FOUND (EFI_ERROR_BIT | 14)

#define EFI_VARIABLE_NON_VOLATILE 0x1
#define EFI_VARIABLE_BOOTSERVICE_ACCESS 0x2
#define EFI_VARIABLE_RUNTIME_ACCESS 0x4

enum efi_reset_type { EfiResetCold, EfiResetWarm, EfiResetShutdown };

typedef struct {
	uint32_t data1;
	uint16_t data2, data3;
	uint8_t data4[8];
} efi_guid;

typedef struct {
	uint64_t signature;
	uint32_t revision, header_size, crc32, reserved;
} efi_table_header;

typedef struct efi_simple_text_output efi_simple_text_output;
struct efi_simple_text_output {
	efi_status(EFIAPI *reset)(efi_simple_text_output *, uint8_t);
	efi_status(EFIAPI *output_string)(efi_simple_text_output *, const char16 *);
	/* TestString, QueryMode, SetMode, SetAttribute, ClearScreen, ...: unused */
};

typedef struct {
	efi_table_header hdr;
	void *get_time, *set_time, *get_wakeup_time, *set_wakeup_time;
	void *set_virtual_address_map, *convert_pointer;
	efi_status(EFIAPI *get_variable)(const char16 *name, const efi_guid *vendor,
					 uint32_t *attributes, uint64_t *size, void *data);
	void *get_next_variable_name;
	efi_status(EFIAPI *set_variable)(const char16 *name, const efi_guid *vendor,
					 uint32_t attributes, uint64_t size, const void *data);
	void *get_next_high_monotonic_count;
	void(EFIAPI *reset_system)(enum efi_reset_type type, efi_status status,
				   uint64_t size, const void *data);
} efi_runtime_services;

typedef struct {
	efi_table_header hdr;
	const char16 *firmware_vendor;
	uint32_t firmware_revision;
	efi_handle console_in_handle;
	void *con_in;
	efi_handle console_out_handle;
	efi_simple_text_output *con_out;
	efi_handle standard_error_handle;
	efi_simple_text_output *std_err;
	efi_runtime_services *runtime_services;
	void *boot_services;
	uint64_t number_of_table_entries;
	void *configuration_table;
} efi_system_table;

_Static_assert(offsetof(efi_system_table, con_out) == 64, "EFI_SYSTEM_TABLE.ConOut");
_Static_assert(offsetof(efi_system_table, runtime_services) == 88, "EFI_SYSTEM_TABLE.RuntimeServices");
_Static_assert(offsetof(efi_runtime_services, get_variable) == 72, "GetVariable");
_Static_assert(offsetof(efi_runtime_services, set_variable) == 88, "SetVariable");
_Static_assert(offsetof(efi_runtime_services, reset_system) == 104, "ResetSystem");

/* Our vendor GUID for the test variable: 6f78766d-7274-4f58-8e2a-510f3c779b21. */
static const efi_guid oxvirt_test_guid = {
	0x6f78766d, 0x7274, 0x4f58, {0x8e, 0x2a, 0x51, 0x0f, 0x3c, 0x77, 0x9b, 0x21}};
static const char16 var_name[] = L"OxvirtTest";

static efi_system_table *st;

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

#define COM1 0x3f8

static void com1_putc(char c)
{
	/* LSR bit 5: transmit holding register empty; bounded, a missing UART reads 0xff */
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, (uint8_t)c);
}

/* One line, both ways: ConOut (UTF-16, CR LF) and COM1 directly. */
static void say(const char *line)
{
	char16 buf[128];
	size_t n = 0;
	for (const char *p = line; *p && n < 125; p++)
		buf[n++] = (uint8_t)*p;
	buf[n++] = '\r';
	buf[n++] = '\n';
	buf[n] = 0;
	if (st->con_out)
		st->con_out->output_string(st->con_out, buf);
	for (const char *p = line; *p; p++)
		com1_putc(*p);
	com1_putc('\r');
	com1_putc('\n');
}

/* A tiny line builder: append text, hex numbers and printable bytes. */
struct line {
	char s[120];
	size_t n;
};

static void add(struct line *l, const char *t)
{
	while (*t && l->n < sizeof l->s - 1)
		l->s[l->n++] = *t++;
	l->s[l->n] = 0;
}

static void add_hex(struct line *l, uint64_t v)
{
	char t[19] = "0x";
	int i = 2, d = 60;
	while (d > 0 && !(v >> d))
		d -= 4;
	for (; d >= 0; d -= 4)
		t[i++] = "0123456789abcdef"[(v >> d) & 0xf];
	t[i] = 0;
	add(l, t);
}

/* Printable ASCII as is, anything else as \xNN. */
static void add_bytes(struct line *l, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char t[5] = {(char)b[i], 0};
		if (b[i] < 0x20 || b[i] > 0x7e || b[i] == '\\') {
			t[0] = '\\';
			t[1] = 'x';
			t[2] = "0123456789abcdef"[b[i] >> 4];
			t[3] = "0123456789abcdef"[b[i] & 0xf];
		}
		add(l, t);
	}
}

static void add_char16(struct line *l, const char16 *s)
{
	for (size_t i = 0; s && s[i] && i < 40; i++) {
		char t[2] = {s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?', 0};
		add(l, t);
	}
}

static void nvram_check(void)
{
	efi_runtime_services *rt = st->runtime_services;
	uint8_t data[32];
	uint64_t size = sizeof data;
	uint32_t attrs = 0;
	struct line l = {0};
	efi_status s = rt->get_variable(var_name, &oxvirt_test_guid, &attrs, &size, data);
	if (s == 0) {
		add(&l, "OXEFI-VAR found=");
		add_bytes(&l, data, size);
		add(&l, " attrs=");
		add_hex(&l, attrs);
		say(l.s);
		return;
	}
	if (s != EFI_NOT_FOUND) {
		add(&l, "OXEFI-VAR FAIL op=get status=");
		add_hex(&l, s);
		say(l.s);
		return;
	}
	static const uint8_t one[] = {'1'};
	s = rt->set_variable(var_name, &oxvirt_test_guid,
			     EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS |
				     EFI_VARIABLE_RUNTIME_ACCESS,
			     sizeof one, one);
	if (s != 0) {
		add(&l, "OXEFI-VAR FAIL op=set status=");
		add_hex(&l, s);
	} else {
		add(&l, "OXEFI-VAR set");
	}
	say(l.s);
}

efi_status EFIAPI efi_main(efi_handle image, efi_system_table *system_table)
{
	(void)image;
	st = system_table;
	struct line l = {0};
	add(&l, "OXEFI-OK fw=");
	add_char16(&l, st->firmware_vendor);
	add(&l, " rev=");
	add_hex(&l, st->firmware_revision);
	add(&l, " uefi=");
	add_hex(&l, st->hdr.revision);
	say(l.s);
	nvram_check();
	say("OXEFI-SHUTDOWN");
	st->runtime_services->reset_system(EfiResetShutdown, 0, 0, NULL);
	say("OXEFI-SHUTDOWN-RETURNED");
	for (;;)
		__asm__ volatile("cli; hlt");
}
