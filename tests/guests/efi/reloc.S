/*
 * The PE's base relocation table, gnu-efi's dummy-reloc way: oxefi has no relocations
 * (position-independent code, no pointers in data; build.sh checks), but a loader wants a
 * .reloc section, so it holds one block with two IMAGE_REL_BASED_ABSOLUTE (no-op) entries.
 */
	.data
dummy:	.long	0

	.section .reloc, "a"
label1:
	.long	dummy - label1		/* page RVA (resolves to a link-time constant) */
	.long	12			/* block size: 8-byte header + two 2-byte entries */
	.word	0			/* IMAGE_REL_BASED_ABSOLUTE << 12 | 0 */
	.word	0

	.section .note.GNU-stack, "", @progbits
