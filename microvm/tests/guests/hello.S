# The smallest guest: announce "init started" on the boot timer, print a line
# on the 16550, report exit code 42, and reset through the i8042.
# Entered in 64-bit mode with the VMM's identity page tables.
    .code64
    .text
    .globl _start
_start:
    mov $0x440, %dx
    mov $1, %al
    out %al, %dx            # boot timer: init started
    lea message(%rip), %rsi
    mov $0x3f8, %dx
next:
    lodsb
    test %al, %al
    jz done
    out %al, %dx            # serial transmit register
    jmp next
done:
    mov $0x440, %dx
    mov $2, %al
    out %al, %dx            # boot timer: workload started
    mov $0x441, %dx
    mov $42, %al
    out %al, %dx            # exit code
    mov $0x64, %dx
    mov $0xfe, %al
    out %al, %dx            # i8042: pulse the reset line
park:
    hlt
    jmp park
message:
    .asciz "hello from a hand-written guest\n"
