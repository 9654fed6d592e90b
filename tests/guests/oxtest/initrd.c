/*
 * oxtest guest: initrd location and hash.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- initrd */

/* Where the loader put the initrd and an FNV-1a 64 hash of its bytes (the test hashes the
 * file); must lie in RAM and not overlap this image. Must run before anything below
 * 1 MiB or past our image is reused. */
static void check_initrd(void)
{
	if (!initrd_size) {
		say("initrd", 0, "the loader passed no initrd");
		return;
	}
	extern char __image_start[], __image_end[];
	int in_ram = e820_is_ram(initrd_addr, initrd_size);
	int overlaps = initrd_addr < (uint64_t)__image_end && initrd_addr + initrd_size > (uint64_t)__image_start;
	uint64_t h = 0xcbf29ce484222325ull;
	if (in_ram && initrd_addr + initrd_size <= (1ull << 32)) {
		const uint8_t *p = (const uint8_t *)initrd_addr;
		for (uint64_t i = 0; i < initrd_size; i++) {
			h ^= p[i];
			h *= 0x100000001b3ull;
		}
	}
	result("initrd", in_ram && !overlaps);
	put("addr=");
	put_hex(initrd_addr);
	put(" size=");
	put_dec(initrd_size);
	put(" fnv=");
	put_hex(h);
	if (!in_ram)
		put(" reason=not in e820 RAM (or above 4 GiB)");
	else if (overlaps)
		put(" reason=overlaps the kernel image");
	flush();
}
