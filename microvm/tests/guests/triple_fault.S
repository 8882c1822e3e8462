# Loads an empty IDT and raises an exception: with nowhere to deliver it the
# CPU triple-faults, which the VMM must report instead of hanging.
    .code64
    .text
    .globl _start
_start:
    lidt empty_idt(%rip)
    ud2
empty_idt:
    .word 0
    .quad 0
