# The benchmark guest, the same bytes for twinbox's VMM and for QEMU: a flat
# 32-bit multiboot image (QEMU loads it with -kernel; twinbox enters it in
# flat protected mode). It writes the boot-timer "init started" event, prints
# "!" on COM1, and then either ends the VM (isa-debug-exit for QEMU's microvm
# machine, which has no i8042; the i8042 reset for twinbox) or, when
# built with --defsym PARK=1, halts forever so that memory can be read.
    .code32
    .text
header:
    .long 0x1badb002                      # multiboot magic
    .long 0x00010000                      # flags: the address fields below are valid
    .long -(0x1badb002 + 0x00010000)      # checksum
    .long 0x100000                        # header_addr
    .long 0x100000                        # load_addr
    .long 0                               # load_end_addr: the whole file
    .long 0                               # bss_end_addr: no bss
    .long 0x100000 + (_start - header)    # entry_addr
    .globl _start
_start:
    mov $0x440, %dx
    mov $1, %al
    out %al, %dx
    mov $0x3f8, %dx
    mov $'!', %al
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
.ifndef PARK
    mov $0xf4, %dx
    xor %al, %al
    out %al, %dx                          # QEMU's isa-debug-exit (twinbox: no device)
    mov $0x64, %dx
    mov $0xfe, %al
    out %al, %dx
.endif
park:
    cli
    hlt
    jmp park
