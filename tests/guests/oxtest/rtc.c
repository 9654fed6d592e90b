/*
 * oxtest guest: CMOS wall clock.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- CMOS RTC */

static uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static uint64_t bcd(uint8_t v, int binary)
{
	return binary ? v : (uint64_t)((v >> 4) * 10 + (v & 15));
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, uint64_t m, uint64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	uint64_t yoe = (uint64_t)(y - era * 400);
	uint64_t doy = (153 * (m + (m > 2 ? (uint64_t)-3 : 9)) + 2) / 5 + d - 1;
	uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* The wall clock as an OS reads it at boot: wait out an update, decode BCD/12h. */
static void check_rtc(void)
{
	for (int i = 0; i < 100000 && (cmos_read(0x0a) & 0x80); i++)
		cpu_relax();
	uint8_t b = cmos_read(0x0b);
	int binary = (b >> 2) & 1, h24 = (b >> 1) & 1;
	uint64_t sec = bcd(cmos_read(0x00), binary), min = bcd(cmos_read(0x02), binary);
	uint8_t hr = cmos_read(0x04);
	uint64_t day = bcd(cmos_read(0x07), binary), mon = bcd(cmos_read(0x08), binary);
	uint64_t year = bcd(cmos_read(0x09), binary), century = bcd(cmos_read(0x32), binary);
	uint64_t hour = bcd(hr & 0x7f, binary);
	if (!h24) {
		hour %= 12;
		if (hr & 0x80)
			hour += 12;
	}
	if (century < 19 || century > 30)
		century = 20;
	year += century * 100;
	int ok = sec < 60 && min < 60 && hour < 24 && day >= 1 && day <= 31 && mon >= 1 && mon <= 12;
	uint64_t epoch = ok ? (uint64_t)days_from_civil((int64_t)year, mon, day) * 86400 + hour * 3600 + min * 60 + sec : 0;
	result("rtc", ok);
	put("epoch=");
	put_dec(epoch);
	put(" date=");
	put_dec(year);
	put("-");
	put_dec(mon);
	put("-");
	put_dec(day);
	put(" time=");
	put_dec(hour);
	put(":");
	put_dec(min);
	put(":");
	put_dec(sec);
	put(binary ? " binary" : " bcd");
	put(h24 ? " 24h" : " 12h");
	if (!ok)
		put(" reason=date/time registers out of range");
	flush();
}
